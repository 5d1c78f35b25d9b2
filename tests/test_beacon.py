"""The beacon code: exact round trip through real PyAV encode, rescale, transcode and decode.

The source is the hardest content for an encoder (full-frame random noise moving
every frame), so the code's cells compete with the picture for bits.
"""

from __future__ import annotations

import io
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from probes.core import beacon

W, H, FPS, N = 640, 360, 30, 120
T0_MS = 1_764_129_600_000  # 2025-11-26T04:00:00Z


def _noise_plane(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


@pytest.fixture(scope="module")
def source() -> tuple[list[int], bytes]:
    """N stamped 640x360 frames of moving noise, H.264 (libx264) in MP4; and their stamps."""
    rng = np.random.default_rng(7)
    field = _noise_plane(rng, H * 3, W * 3)
    truth: list[int] = []

    def frames():
        for i in range(N):
            ms = T0_MS + i * 33 + i % 7  # irregular, so neighbours never share low bits
            truth.append(ms)
            yuv = np.empty((H * 3 // 2, W), np.uint8)
            yuv[:H] = field[i * 3 : i * 3 + H, i * 5 : i * 5 + W]
            yuv[H:] = 128
            beacon.stamp(yuv[:H], ms / 1000.0)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            yield frame

    return truth, _encode(frames(), W, H, 800_000)


def _encode(frames, w: int, h: int, bitrate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        for frame in frames:
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data)) as container:
        return list(container.decode(video=0))


def _read_all(frames) -> list[int | None]:
    return [beacon.read_ms(f.to_ndarray(format="gray")) for f in frames]


def _assert_exact(got: list[int | None], truth: list[int], label: str) -> None:
    assert len(got) == len(truth), label
    exact = sum(g == t for g, t in zip(got, truth, strict=True))
    wrong = [(i, g, t) for i, (g, t) in enumerate(zip(got, truth, strict=True)) if g is not None and g != t]
    assert not wrong, f"{label}: wrong values decoded (CRC let them through): {wrong[:3]}"
    assert exact / len(truth) >= 0.99, f"{label}: only {exact}/{len(truth)} frames decoded exactly"


def test_round_trip_in_memory():
    rng = np.random.default_rng(1)
    for ms in (0, 1, T0_MS, T0_MS + 999, beacon.MAX_MS):
        y = _noise_plane(rng)
        beacon.stamp(y, ms / 1000.0)
        assert beacon.read_ms(y) == ms
        assert beacon.read(y) == ms / 1000.0


def test_stamp_rounds_to_the_millisecond_and_rejects_out_of_range():
    y = np.zeros((H, W), np.uint8)
    beacon.stamp(y, 1.0006)
    assert beacon.read_ms(y) == 1001
    with pytest.raises(ValueError):
        beacon.stamp(y, -1.0)
    with pytest.raises(ValueError):
        beacon.stamp(y, 2.0**48)
    with pytest.raises(ValueError):
        beacon.stamp(np.zeros((40, 60), np.uint8), 1.0)


def test_stamp_touches_only_the_corner_region():
    rng = np.random.default_rng(3)
    y = _noise_plane(rng)
    before = y.copy()
    beacon.stamp(y, T0_MS / 1000.0)
    changed = np.argwhere(y != before)
    lay = beacon.DEFAULT_LAYOUT
    assert changed[:, 0].min() >= int(lay.y0 * H) and changed[:, 0].max() < round((lay.y0 + lay.rows * lay.cell_h) * H)
    assert changed[:, 1].min() >= int(lay.x0 * W) and changed[:, 1].max() < round((lay.x0 + lay.cols * lay.cell_w) * W)


def test_h264_encode_decode_exact(source):
    truth, data = source
    _assert_exact(_read_all(_decode(data)), truth, "640x360 H.264 800k")


@pytest.mark.parametrize(
    ("w", "h", "interp"),
    [(320, 180, "BILINEAR"), (160, 90, "BILINEAR"), (160, 90, "AREA"), (426, 240, "BICUBIC")],
)
def test_rescaled_renditions_exact(source, w, h, interp):
    truth, data = source
    frames = [f.reformat(width=w, height=h, format="yuv420p", interpolation=interp) for f in _decode(data)]
    _assert_exact(_read_all(frames), truth, f"scaled to {w}x{h} {interp}")


@pytest.mark.parametrize(("w", "h", "bitrate"), [(320, 180, 200_000), (160, 90, 150_000), (160, 90, 40_000)])
def test_transcoded_low_bitrate_renditions_exact(source, w, h, bitrate):
    """A transcoder's ladder: decode, scale down, re-encode at a low bitrate, decode again."""
    truth, data = source

    def scaled():
        for i, frame in enumerate(_decode(data)):
            small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BICUBIC")
            small.pts, small.time_base = i, Fraction(1, FPS)  # the decoder's pts are in the MP4 time base
            yield small

    out = _encode(scaled(), w, h, bitrate)
    # Guard the premise: the encoder really was starved (noise at this rate looks terrible).
    assert len(out) * 8 / (N / FPS) < bitrate * 1.5
    _assert_exact(_read_all(_decode(out)), truth, f"{w}x{h} at {bitrate} bit/s")


def test_blank_and_garbage_give_none():
    rng = np.random.default_rng(11)
    assert beacon.read(np.zeros((H, W), np.uint8)) is None
    assert beacon.read(np.full((H, W), 255, np.uint8)) is None
    assert beacon.read(np.full((H, W), 128, np.uint8)) is None
    # Random pictures: none may decode (2^-16 per frame at most even if references pass).
    assert all(beacon.read(_noise_plane(rng)) is None for _ in range(300))
    # Coarse random blocks: references often pass the contrast test, the CRC must not.
    for _ in range(300):
        blocks = rng.choice(np.array([16, 235], np.uint8), size=(18, 32))
        assert beacon.read(np.kron(blocks, np.ones((20, 20), np.uint8))) is None


@pytest.mark.parametrize(
    "thing",
    [
        None,
        "frame",
        b"\x00" * 100,
        np.zeros((H, W), np.float32),
        np.zeros((H, W, 3), np.uint8),
        np.zeros((0, 0), np.uint8),
        np.zeros((10, 10), np.uint8),
        np.zeros((H,), np.uint8),
    ],
)
def test_read_never_raises_on_garbage(thing):
    assert beacon.read(thing) is None


def test_crc_rejects_every_single_cell_corruption():
    y = np.zeros((H, W), np.uint8)
    ms = T0_MS + 12_345
    beacon.stamp(y, ms / 1000.0)
    lay = beacon.DEFAULT_LAYOUT
    _, data_cells = lay.cells()
    cw, ch = W * lay.cell_w, H * lay.cell_h
    for r, c in data_cells:
        corrupt = y.copy()
        top, left = int(round((lay.y0 + r * lay.cell_h) * H)), int(round((lay.x0 + c * lay.cell_w) * W))
        cell = corrupt[top : top + int(ch), left : left + int(cw)]
        cell[...] = np.where(cell > 128, beacon.BLACK, beacon.WHITE)
        assert beacon.read(corrupt) is None, f"flipping cell ({r},{c}) went undetected"
    assert beacon.read_ms(y) == ms


def test_reference_cells_without_contrast_give_none():
    y = np.zeros((H, W), np.uint8)
    beacon.stamp(y, T0_MS / 1000.0)
    lay = beacon.DEFAULT_LAYOUT
    # Grey out the left reference column: the code is no longer trustworthy.
    left, right = int(round(lay.x0 * W)), int(round((lay.x0 + lay.cell_w) * W))
    y[:, left:right] = 128
    assert beacon.read(y) is None


def test_read_reads_a_strided_view():
    """Probes may hand over a view of a decoder buffer whose rows are padded."""
    padded = np.zeros((H, W + 64), np.uint8)
    beacon.stamp(padded[:, :W], T0_MS / 1000.0)
    assert beacon.read_ms(padded[:, :W]) == T0_MS


def test_read_cost_well_under_a_millisecond():
    y = _noise_plane(np.random.default_rng(5))
    beacon.stamp(y, T0_MS / 1000.0)
    beacon.read(y)  # warm the per-size index cache
    timings = []
    for _ in range(200):
        t = time.perf_counter()
        beacon.read(y)
        timings.append(time.perf_counter() - t)
    median = sorted(timings)[len(timings) // 2]
    assert median < 0.0005, f"read() median {median * 1e6:.0f} us on 640x360"


def _unstamped(n: int = 60) -> bytes:
    rng = np.random.default_rng(11)

    def frames():
        for i in range(n):
            yuv = np.full((H * 3 // 2, W), 128, np.uint8)
            yuv[:H] = _noise_plane(rng)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            yield frame

    return _encode(frames(), W, H, 800_000)


def test_a_key_frame_check_reads_a_stamped_segment_in_full(source):
    """probes/latency.py read_segment_beacons(key_first=True), the recheck of a stream that had
    no beacon: a stamped segment is read as in full (both ends' capture times)."""
    from probes.latency import read_segment_beacons

    truth, data = source
    full = read_segment_beacons(data)
    checked = read_segment_beacons(data, key_first=True)
    assert full.first_beacon == pytest.approx(truth[0] / 1000.0, abs=0.001)
    assert full.last_beacon == pytest.approx(truth[-1] / 1000.0, abs=0.001)
    assert (checked.frames, checked.first_beacon, checked.last_beacon) == \
        (full.frames, full.first_beacon, full.last_beacon) == (N, full.first_beacon, full.last_beacon)


def test_a_key_frame_check_times_an_unstamped_segment_from_its_packets(monkeypatch):
    """No beacon in the key frame: no capture time, and the frames' count and first and last
    presentation times come from the packets, equal to a full decode's."""
    from probes.latency import read_segment_beacons

    data = _unstamped()
    full = read_segment_beacons(data)
    reads: list[int] = []
    real_read = beacon.read

    def counted(y):
        reads.append(1)
        return real_read(y)

    monkeypatch.setattr(beacon, "read", counted)
    checked = read_segment_beacons(data, key_first=True)
    assert len(reads) == 1  # the key frame alone was looked at
    assert full.first_beacon is None and checked.first_beacon is None and checked.last_beacon is None
    assert (checked.frames, checked.first_pts, checked.last_pts) == (full.frames, full.first_pts, full.last_pts)
    assert checked.frames == 60 and checked.last_pts == pytest.approx(59 / FPS)
