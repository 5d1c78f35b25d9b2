"""Media analysis on real PyAV-made MPEG-TS segments: each detector fires on its fault
and stays quiet on the healthy stream (probes/core/segment_decode.py + probes/core/media_analysis.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math

import numpy as np
import pytest
from test_media_synth import corrupt, make_segment

from probes.base import State
from probes.core.media_analysis import PTS_WRAP_S, MediaAnalyser, MediaConfig
from probes.core.segment_decode import DecodedSegment, DecodeOptions, decode_segment, decode_segment_bounded


def run(segments, **kw):
    """Decode and analyse segments in order with one analyser; return the findings."""
    analyser = MediaAnalyser(MediaConfig())
    return [analyser.feed(decode_segment(s), **kw) for s in segments]


def healthy(start_s: float, **kw) -> bytes:
    return make_segment(start_s=start_s, **kw)


@pytest.fixture(scope="module")
def healthy3():
    return [healthy(0.0), healthy(2.0), healthy(4.0)]


def test_healthy_stream_is_clean(healthy3):
    found = run(healthy3, segment_duration=2.0, declared_bandwidth=5_000_000)
    for f in found:
        assert f.faults == [], f.faults
        assert f.decode_errors == 0 and f.error is None
        assert f.video_frames == 50
        assert f.frozen_s < 0.2 and f.black_s == 0.0 and f.silence_s == 0.0
        assert abs(f.av_offset_s) < 0.08
        assert f.dropped_frames == 0 and f.audio_gap_s == 0.0
        assert not f.discontinuity
    # a 0.3-amplitude sine: RMS 0.212 -> -13.5 dBFS; peak 0.3 -> -10.5 dBFS
    assert found[1].audio_rms_dbfs == pytest.approx(-13.5, abs=0.7)
    assert found[1].audio_peak_dbfs == pytest.approx(-10.5, abs=0.7)
    assert found[0].keyframe_interval_s is None  # nothing to compare the first key frame with
    assert found[1].keyframe_interval_s == pytest.approx(2.0, abs=0.05)
    assert found[2].start_s == pytest.approx(4.0, abs=0.05)
    assert 0 < found[1].bitrate_bps < 5_000_000


def test_frozen_fires_within_one_segment_of_onset(healthy3):
    still = [healthy(2.0 * i, video="still") for i in (1, 2)]
    found = run([healthy3[0], *still])
    assert "frozen_video" not in found[0].fault_names
    assert "frozen_video" in found[1].fault_names
    assert found[1].frozen_s >= 2.0
    assert found[2].frozen_s >= 4.0  # the run carries across the segment boundary
    assert "black_video" not in found[1].fault_names


def test_short_freeze_is_not_reported():
    # 1 s still then moving again: below the 2-s threshold
    a = make_segment(seconds=1.0, start_s=0.0, video="still")
    b = make_segment(seconds=2.0, start_s=1.0, video="moving")
    found = run([a, b])
    assert all("frozen_video" not in f.fault_names for f in found)
    assert found[1].frozen_s == 0.0


def test_black_fires_and_hides_frozen(healthy3):
    black = [healthy(2.0, video="black"), healthy(4.0, video="black")]
    found = run([healthy3[0], *black])
    assert found[0].fault_names == set()
    assert "black_video" in found[1].fault_names
    assert found[1].mean_luma < 20
    assert "frozen_video" not in found[1].fault_names | found[2].fault_names


def test_silence_fires_and_tone_does_not(healthy3):
    found = run([healthy3[0], healthy(2.0, audio="silence"), healthy(4.0, audio="silence")])
    assert "silent_audio" not in found[0].fault_names
    assert found[1].audio_rms_dbfs < -50
    # AAC's first frame after the tone still carries some of it: the run may start a frame late
    assert found[1].silence_s > 1.9
    assert "silent_audio" in found[1].fault_names | found[2].fault_names
    assert "silent_audio" in found[2].fault_names


def test_clipping_fires_on_a_clipped_waveform(healthy3):
    found = run([healthy3[0], healthy(2.0, audio="clipped")])
    assert "audio_clipping" not in found[0].fault_names
    assert "audio_clipping" in found[1].fault_names
    assert found[1].clipped_runs > 10
    assert found[1].audio_peak_dbfs > -0.5


def test_clipping_counts_runs_across_segment_boundary():
    analyser = MediaAnalyser()
    base = decode_segment(make_segment(seconds=0.5))

    def with_samples(x: np.ndarray, start: float) -> DecodedSegment:
        seg = dataclasses.replace(base)
        seg.video_pts = np.empty(0)
        seg.video_key = np.empty(0, bool)
        seg.video_luma = np.empty((0, 36, 64), np.uint8)
        seg.audio_samples = x.astype(np.float32)
        seg.audio_chunk_pts = np.array([start])
        seg.audio_chunk_len = np.array([x.shape[1]])
        return seg

    tail = np.zeros((2, 1000))
    tail[:, -4:] = 1.0  # 4 full-scale samples at the end ...
    head = np.zeros((2, 1000))
    head[:, :4] = -1.0  # ... and 4 at the start of the next: one run of 8 > 6
    assert analyser.feed(with_samples(tail, 0.0)).clipped_runs == 0
    assert analyser.feed(with_samples(head, 1000 / 48000)).clipped_runs == 1


def test_desync_fault_and_warning(healthy3):
    late = run([healthy(0.0, audio_shift_s=0.3)])[0]
    assert "av_desync" in late.fault_names
    assert late.av_offset_s == pytest.approx(0.3, abs=0.03)
    warn = run([healthy(0.0, audio_shift_s=0.12)])[0]
    assert "av_desync" in warn.warning_names and "av_desync" not in warn.fault_names
    early = run([healthy(0.0, audio_shift_s=-0.3)])[0]
    assert "av_desync" in early.fault_names and early.av_offset_s < -0.25
    assert all("av_desync" not in f.warning_names | f.fault_names for f in run(healthy3))


def test_an_audio_jump_inside_a_segment_is_named_a_desync_with_it(healthy3):
    """An encoder shifts its audio by 300 ms mid-segment: the jump is a timestamp gap and, as the
    video runs on, a desync from there on, named on the same segment (the offset at its end)."""
    analyser = MediaAnalyser(MediaConfig())
    first = analyser.feed(decode_segment(healthy3[0]))
    seg = decode_segment(healthy3[1])
    half = seg.audio_chunk_pts.size // 2
    seg.audio_chunk_pts = np.concatenate((seg.audio_chunk_pts[:half], seg.audio_chunk_pts[half:] + 0.3))
    found = analyser.feed(seg)
    assert first.faults == []
    assert {"timestamp_gap", "av_desync"} <= found.fault_names
    assert found.av_offset_s == pytest.approx(0.3, abs=0.05)


def test_audio_that_starts_late_in_the_first_segment_is_no_desync(healthy3):
    """After a (re)start the first segment's audio may begin a few hundred ms after its video
    (the audio encoder's delay); its end is in step: no A/V offset to call a desync."""
    seg = decode_segment(healthy3[0])
    n = 12  # about 256 ms of 1024-sample chunks at 48 kHz
    samples_cut = int(seg.audio_chunk_len[:n].sum())
    seg.audio_chunk_pts, seg.audio_chunk_len = seg.audio_chunk_pts[n:], seg.audio_chunk_len[n:]
    seg.audio_samples = seg.audio_samples[:, samples_cut:]
    found = MediaAnalyser(MediaConfig()).feed(seg)
    assert "av_desync" not in found.fault_names | found.warning_names, found.faults
    assert abs(found.av_offset_s) < 0.08


def test_dropped_frames_and_gaps():
    found = run([make_segment(drop_frames=(10, 11, 12))])[0]
    assert "timestamp_gap" in found.fault_names
    assert found.dropped_frames == 3
    # a whole 0.4 s missing between two segments: video and audio gaps
    a, b = make_segment(start_s=0.0), make_segment(start_s=2.4)
    found = run([a, b])
    assert found[0].faults == []
    # 10 frames missing; the generator's AAC priming shifts one segment's video by 21 ms
    assert found[1].dropped_frames in (9, 10)
    assert found[1].audio_gap_s == pytest.approx(0.4, abs=0.05)
    assert not found[1].discontinuity


def test_a_gop_is_not_measured_across_a_hole_in_the_timestamps():
    """The encoder stops for 6 s and comes back (under the 10-s discontinuity bound): the hole is a
    timestamp gap, and the 8 s between the key frames either side of it are no long GOP."""
    found = run([make_segment(start_s=0.0), make_segment(start_s=8.0), make_segment(start_s=10.0)])
    assert "timestamp_gap" in found[1].fault_names
    assert all("keyframe_interval_long" not in f.fault_names for f in found), [f.faults for f in found]
    assert found[2].keyframe_interval_s == pytest.approx(2.0, abs=0.05)


def test_a_still_picture_cannot_judge_the_bitrate():
    """A segment over its declared bitrate, then a frozen picture (almost no bits): the frozen one
    says nothing of the encoder's peak, so the bitrate check is unjudged, not passed."""
    moving, still = make_segment(start_s=0.0), make_segment(start_s=2.0, video="still")
    analyser = MediaAnalyser(MediaConfig(freeze_min_s=1.5))
    first = analyser.feed(decode_segment(moving), segment_duration=2.0, declared_bandwidth=1_000)
    second = analyser.feed(decode_segment(still), segment_duration=2.0, declared_bandwidth=10**9)
    assert "bitrate_over_declared" in first.fault_names and not first.unjudged
    assert "frozen_video" in second.fault_names
    assert "bitrate_over_declared" not in second.fault_names and second.unjudged == {"bitrate_over_declared"}


def test_a_segment_shorter_than_half_the_target_duration_is_not_judged_alone():
    """RFC 8216 §4.3.4.2: BANDWIDTH is the peak over contiguous segments lasting 0.5-1.5 target
    durations; a 0.5-s segment (cut at an encoder stall, mostly its key frame) alone is no such
    set: unjudged, where the same segment in a 0.5-s-target playlist is judged."""
    seg = decode_segment(make_segment(start_s=0.0))
    short = MediaAnalyser(MediaConfig()).feed(seg, segment_duration=0.5, declared_bandwidth=1_000, target_duration=2.0)
    assert "bitrate_over_declared" not in short.fault_names and short.unjudged == {"bitrate_over_declared"}
    judged = MediaAnalyser(MediaConfig()).feed(seg, segment_duration=0.5, declared_bandwidth=1_000, target_duration=1.0)
    assert "bitrate_over_declared" in judged.fault_names


def test_big_jump_is_a_discontinuity_not_a_gap():
    found = run([make_segment(start_s=0.0), make_segment(start_s=100.0)])
    assert found[1].discontinuity
    assert found[1].faults == []


def test_pts_wrap_is_continuous(healthy3):
    analyser = MediaAnalyser()
    a = decode_segment(healthy3[0])
    b = decode_segment(healthy3[1])
    shift = PTS_WRAP_S - 2.0  # a ends exactly at the 33-bit wrap, b restarts near 0
    a.video_pts = a.video_pts + shift
    a.audio_chunk_pts = a.audio_chunk_pts + shift
    b.video_pts = b.video_pts - 2.0
    b.audio_chunk_pts = b.audio_chunk_pts - 2.0
    analyser.feed(a)
    f = analyser.feed(b)
    assert not f.discontinuity
    assert f.faults == []
    assert f.start_s == pytest.approx(PTS_WRAP_S, abs=0.05)


def test_corrupt_segment_counts_decode_errors_without_raising(healthy3):
    bad = corrupt(healthy3[1], at=0.3, length=4096)
    seg = decode_segment(bad)
    assert seg.decode_errors > 0
    assert seg.error
    found = run([healthy3[0], bad])
    assert "decode_errors" not in found[0].fault_names
    assert "decode_errors" in found[1].fault_names


@pytest.mark.parametrize("data", [b"", b"\x47" + b"garbage" * 50, bytes(188 * 20)])
def test_unreadable_input_is_data(data):
    seg = decode_segment(data)
    assert seg.error
    assert seg.decode_errors >= 1
    assert seg.video_frames == 0
    f = MediaAnalyser().feed(seg)
    assert "decode_errors" in f.fault_names


def test_long_gop_fires_on_the_open_interval():
    found = run([make_segment(seconds=5.0, gop=1000)])[0]
    assert "keyframe_interval_long" in found.fault_names
    assert found.keyframe_interval_s > 4.0
    ok = run([make_segment(seconds=6.0, gop=50)])[0]
    assert ok.keyframe_interval_s is None or ok.keyframe_interval_s <= 4.0
    assert ok.faults == []


def test_long_gop_across_segments_is_caught_within_two_segments():
    whole = decode_segment(make_segment(seconds=6.0, gop=1000))
    analyser = MediaAnalyser()
    found = []
    for lo in (0.0, 2.0, 4.0):  # cut the decoded 6-s GOP into three 2-s segments
        piece = dataclasses.replace(whole)
        vm = (whole.video_pts >= lo) & (whole.video_pts < lo + 2.0)
        am = (whole.audio_chunk_pts >= lo) & (whole.audio_chunk_pts < lo + 2.0)
        piece.video_pts, piece.video_key, piece.video_luma = (
            whole.video_pts[vm], whole.video_key[vm], whole.video_luma[vm],
        )  # fmt: skip
        offsets = np.concatenate(([0], np.cumsum(whole.audio_chunk_len)))
        idx = np.flatnonzero(am)
        piece.audio_samples = whole.audio_samples[:, offsets[idx[0]] : offsets[idx[-1] + 1]]
        piece.audio_chunk_pts, piece.audio_chunk_len = whole.audio_chunk_pts[am], whole.audio_chunk_len[am]
        found.append(analyser.feed(piece, segment_duration=2.0))
    assert [("keyframe_interval_long" in f.fault_names) for f in found] == [False, False, True]
    assert found[2].keyframe_interval_s == pytest.approx(6.0, abs=0.1)


def test_bitrate_over_declared_bandwidth(healthy3):
    f = run([healthy3[0]], segment_duration=2.0)[0]
    measured = f.bitrate_bps
    assert measured == pytest.approx(len(healthy3[0]) * 8 / 2.0)
    over = run([healthy3[0]], segment_duration=2.0, declared_bandwidth=measured / 2)[0]
    assert "bitrate_over_declared" in over.fault_names
    within = run([healthy3[0]], segment_duration=2.0, declared_bandwidth=measured * 0.95)[0]
    assert "bitrate_over_declared" not in within.fault_names  # inside the 10 % tolerance


def test_decode_only_what_is_asked(healthy3):
    seg = decode_segment(healthy3[0], DecodeOptions(video=False))
    assert seg.video_frames == 0 and seg.video_present
    assert seg.video_packet_bytes > 0 and seg.audio_samples.shape[1] > 0
    seg = decode_segment(healthy3[0], DecodeOptions(audio=False, luma_width=32, luma_height=18))
    assert seg.audio_samples.size == 0 and seg.audio_packet_bytes > 0
    assert seg.video_luma.shape == (50, 18, 32)


async def test_bounded_decoding_in_threads(healthy3):
    sem = asyncio.Semaphore(1)
    results = await asyncio.wait_for(
        asyncio.gather(*(decode_segment_bounded(s, None, sem) for s in healthy3)), timeout=30
    )
    assert [r.video_frames for r in results] == [50, 50, 50]
    assert [round(r.video_start, 1) for r in results] == [0.0, 2.0, 4.0]


def test_findings_turn_into_evidence_and_samples(healthy3):
    ok = run([healthy3[0]])[0]
    ev = ok.evidence("origin", "origin", rendition="160p")
    assert len(ev) == 1 and ev[0].state is State.OK and ev[0].fault is None
    assert ev[0].rendition == "160p" and "audio_rms_dbfs" in ev[0].figures
    assert all(math.isfinite(v) for v in ev[0].figures.values())
    black = run([healthy(0.0, video="black", audio="silence")])[0]
    ev = black.evidence("origin", "origin", rendition="160p")
    assert {e.fault for e in ev} == {"black_video", "silent_audio"}
    assert all(e.state is State.DEGRADED for e in ev)
    labels = {"stream": "main", "stage": "origin", "component": "origin", "rendition": "160p"}
    samples = {s.name: s for s in black.samples(labels)}
    assert samples["signalpath_video_black"].value == 1.0
    assert samples["signalpath_video_frozen"].value == 0.0
    assert samples["signalpath_audio_level_dbfs"].value <= -50
    assert samples["signalpath_segment_decode_errors_total"].kind == "inc"
    assert samples["signalpath_av_sync_offset_seconds"].labels == labels


def test_fast_luma_matches_swscale_and_reads_full_range():
    import io

    import av

    from probes.core.frames import small_luma

    data = make_segment(seconds=0.2, width=640, height=360)
    with av.open(io.BytesIO(data), "r", format="mpegts") as c:
        frame = next(c.decode(video=0))
        fast = small_luma(frame, 64, 36).astype(float)
        ref = frame.reformat(width=64, height=36, format="gray", interpolation="AREA").to_ndarray().astype(float)
    assert fast.shape == (36, 64)
    assert np.abs(fast - ref).mean() < 3.0
    black = decode_segment(make_segment(seconds=0.2, video="black"))
    assert black.video_luma.max() <= 2  # TV-range black (16) reads as 0


def test_the_segment_after_a_corrupt_one_is_not_blamed_for_its_hole(healthy3):
    destroyed = bytes(len(healthy3[1]))  # nothing decodable left
    found = run([healthy3[0], destroyed, healthy3[2]])
    assert "decode_errors" in found[1].fault_names
    assert found[2].faults == [], found[2].faults


def test_a_dash_bandwidth_is_a_bucket_over_min_buffer_time_not_a_peak():
    """ISO/IEC 23009-1 §5.3.5.2: a 2-s segment may carry @bandwidth x (2 + @minBufferTime) bits.
    The same segment is over an HLS BANDWIDTH (a peak) of 80 % of its rate, lawful under a DASH
    @bandwidth of 80 % with a 2-s minBufferTime, and over it at 40 %."""
    seg = decode_segment(make_segment(start_s=0.0))
    rate = seg.size_bytes * 8 / 2.0

    def faults(declared: float, buffer_s: float) -> set[str]:
        f = MediaAnalyser(MediaConfig()).feed(seg, segment_duration=2.0, declared_bandwidth=declared,
                                              bandwidth_buffer_s=buffer_s)
        return set(f.fault_names)

    assert "bitrate_over_declared" in faults(0.8 * rate, 0.0)
    assert "bitrate_over_declared" not in faults(0.8 * rate, 2.0)
    assert "bitrate_over_declared" in faults(0.4 * rate, 2.0)


# --- key frames only (DecodeOptions.video_frames='key': the media probe at scale) -----------------

KEY = DecodeOptions(video_frames="key")


def run_key(segments, **kw):
    analyser = MediaAnalyser(MediaConfig())
    return [analyser.feed(decode_segment(s, KEY), **kw) for s in segments]


def test_key_frames_only_time_every_frame_and_decode_one_picture_per_gop(healthy3):
    seg = decode_segment(healthy3[1], KEY)
    assert seg.video_frames == 50 and int(seg.video_key.sum()) == 1  # every frame timed from its packet
    assert seg.video_luma.shape[0] == 1 and list(seg.video_luma_index) == [0]
    whole = decode_segment(healthy3[1])
    assert np.array_equal(seg.video_pts, whole.video_pts)
    assert np.array_equal(seg.video_luma[0], whole.video_luma[0])  # the same key picture
    found = run_key(healthy3, segment_duration=2.0, declared_bandwidth=5_000_000)
    for f in found:
        assert f.faults == [], f.faults
        assert f.video_frames == 50 and f.dropped_frames == 0 and abs(f.av_offset_s) < 0.08
        assert f.frozen_s == 0.0 and f.black_s == 0.0 and f.mean_luma > 20
    assert found[1].keyframe_interval_s == pytest.approx(2.0, abs=0.05)
    # what is not decoded is not missing: frame gaps come from the packets' timestamps
    gap = run_key([make_segment(drop_frames=(10, 11, 12))])[0]
    assert gap.dropped_frames == 3 and "timestamp_gap" in gap.fault_names


def test_key_frames_only_count_what_a_full_decode_shows_of_a_segment_cut_mid_gop():
    """A segment cut mid-GOP (hand-cut or damaged: real packagers cut at key frames): the packets
    before its first key frame cannot be decoded, so reading key frames alone (the media probe at
    scale, the latency probe's beacon recheck) counts and times the frames a full decode shows,
    not every packet (68 frames from 1.28 s before, 50 from 2.0 s here)."""
    from probes.latency import read_segment_beacons

    data = make_segment(seconds=4.0, gop=50, audio=None)
    n = len(data) // 188
    cut = data[:2 * 188] + data[188 * int(n * 0.3):]  # PAT and PMT, then from inside the first GOP
    whole = decode_segment(cut)
    keys = decode_segment(cut, KEY)
    assert whole.video_frames == keys.video_frames == 50
    assert np.array_equal(whole.video_pts, keys.video_pts) and keys.video_pts[0] == pytest.approx(2.0)
    full, checked = read_segment_beacons(cut), read_segment_beacons(cut, key_first=True)
    assert (checked.frames, checked.first_pts, checked.last_pts) == (full.frames, full.first_pts, full.last_pts)
    assert checked.frames == 50


def test_a_damaged_packet_time_is_no_frame_and_nothing_counts_before_a_key_frame():
    from probes.core.segment_decode import MAX_SEGMENT_SPAN_S, decodable_packets

    pts = [1.20, 1.24, 2.0, 2.04, 35796.0, 2.08]
    keys = [False, False, True, False, False, False]
    assert decodable_packets(pts, keys) == ([2.0, 2.04, 2.08], [True, False, False])
    assert decodable_packets([0.0, 0.04], [False, False]) == ([], [])
    assert decodable_packets([5.0, 5.0 + MAX_SEGMENT_SPAN_S], [True, False])[0] == [5.0, 5.0 + MAX_SEGMENT_SPAN_S]


@pytest.mark.parametrize("picture, fault", [("still", "frozen_video"), ("black", "black_video")])
def test_key_frames_only_find_a_still_or_black_picture_one_gop_later(healthy3, picture, fault):
    """From key frame to key frame: two alike 2 s apart are the 2-s run (every frame decoded,
    the first still segment already shows it)."""
    segs = [healthy3[0], healthy(2.0, video=picture), healthy(4.0, video=picture), healthy(6.0, video=picture)]
    every = run(segs)
    keys = run_key(segs)
    assert fault in every[1].fault_names
    assert fault not in keys[1].fault_names and fault in keys[2].fault_names
    assert fault in keys[3].fault_names
    assert (keys[2].frozen_s if picture == "still" else keys[2].black_s) == pytest.approx(2.04, abs=0.05)
    other = "black_video" if picture == "still" else "frozen_video"
    assert all(other not in f.fault_names for f in keys)


@pytest.mark.parametrize("width", [160, 161, 2])
def test_the_last_picture_crosses_as_an_array_and_becomes_a_jpeg_of_an_even_width(healthy3, width: int):
    """``last_picture_width`` (the media probe's thumbnail, decoded in a worker process): a
    plain yuvj420p array, any configured width rounded down to even (4:2:0), and a JPEG from it."""
    import av

    from probes.core.segment_decode import jpeg_thumbnail

    for frames in ("all", "key"):
        d = decode_segment(healthy3[0], DecodeOptions(last_picture_width=width, video_frames=frames))
        assert d.error is None and isinstance(d.last_picture, np.ndarray)
        even = width // 2 * 2
        assert d.last_picture.shape[1] == even and d.last_picture.shape[0] % 3 == 0
        jpeg = jpeg_thumbnail(d.last_picture, width)
        assert jpeg[:2] == b"\xff\xd8"
        with av.open(io.BytesIO(jpeg)) as c:
            assert next(c.decode(video=0)).width == even


def test_the_worker_scales_the_last_picture_only_when_a_thumbnail_is_wanted(healthy3):
    """The media probe's job keeps the last picture unscaled (``keep_last_frame``) and scales
    it only when the probe asks for a thumbnail (due, or the faults differ from the shown
    picture's): a segment whose thumbnail is not wanted costs no scaling and carries no
    picture back; one that is wanted comes back as the same array ``last_picture_width`` gives."""
    from probes.media import _decode_and_analyse

    opts = DecodeOptions(video_frames="key", keep_last_frame=True)
    kept = decode_segment(healthy3[0], opts)
    assert kept.last_frame is not None and kept.last_picture is None
    assert decode_segment(healthy3[0], DecodeOptions(video_frames="key")).last_frame is None
    feed = {"segment_duration": 2.0, "declared_bandwidth": None, "bandwidth_buffer_s": None, "target_duration": 2.0}
    findings, analyser, pic, _ = _decode_and_analyse(healthy3[0], opts, MediaAnalyser(), len(healthy3[0]), feed,
                                                     True, 160)
    eager = decode_segment(healthy3[0], DecodeOptions(video_frames="key", last_picture_width=160)).last_picture
    assert pic is not None and eager is not None and np.array_equal(pic, eager)
    # the shown picture has the same (no) faults: nothing is scaled or sent back
    _, _, pic, _ = _decode_and_analyse(healthy3[1], opts, analyser, len(healthy3[1]), feed,
                                       tuple(sorted(str(f) for f in findings.fault_names)), 160)
    assert pic is None
    # ... but a shown picture with faults this segment no longer has is replaced
    _, _, pic, _ = _decode_and_analyse(healthy3[2], opts, analyser, len(healthy3[2]), feed, ("black_video",), 160)
    assert pic is not None and pic.shape[1] == 160
