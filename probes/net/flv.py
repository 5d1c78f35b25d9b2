"""The RTMP probe's test stream: H.264 encoded by PyAV's libx264, muxed to FLV in memory
and cut into FLV tags, each tag body exactly an RTMP audio/video message payload
(Adobe "Video File Format Specification" 10.1, annex E; FLV tag types 8 and 9 are RTMP
message types 8 and 9). No network I/O: probes/rtmp.py sends the tags.
"""

from __future__ import annotations

import io

from probes.net.rtmp_chunk import MSG_AUDIO, MSG_VIDEO


def encode_test_stream(seconds: float, bitrate: int, *, width: int = 320, height: int = 180,
                       fps: int = 15) -> list[tuple[int, int, bytes]]:
    """``seconds`` of H.264 (libx264 via PyAV) muxed to FLV in memory → ``[(type, ms, payload)]``.

    Each FLV tag body is exactly an RTMP audio/video message payload (FLV spec annex E).
    Noise content so the encoder spends the target bitrate. Blocking: run in a thread.
    """
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flv") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(2 * fps),
                          "x264-params": f"vbv-maxrate={bitrate // 1000}:vbv-bufsize={bitrate // 1000}"}
        rng = np.random.default_rng(7)
        base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for i in range(max(1, round(seconds * fps))):
            img = np.roll(base, i * 4, axis=1)
            img[:, :, 0] ^= rng.integers(0, 64, (height, width), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return parse_flv(buf.getvalue())


def parse_flv(data: bytes) -> list[tuple[int, int, bytes]]:
    """FLV tags (type 8 audio / 9 video only) as ``(type, timestamp ms, body)``."""
    if data[:3] != b"FLV" or len(data) < 13:
        raise ValueError("not an FLV stream")
    pos = int.from_bytes(data[5:9], "big") + 4
    tags: list[tuple[int, int, bytes]] = []
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11:pos + 11 + size]
        pos += 11 + size + 4
        if kind in (MSG_AUDIO, MSG_VIDEO) and len(body) == size:
            tags.append((kind, ts, body))
    return tags
