"""Audio input checks: level in dBFS, silence, clipping — from a feed or a device.

The measurement is :mod:`probes.core.media_analysis`'s (one
:class:`~probes.core.media_analysis.MediaAnalyser` over the decoded samples of a short
capture, see :mod:`probes.video_source`, which also captures audio-only sources); this
module turns its figures into studio findings (:func:`assess_audio`). Thresholds
(shared/THRESHOLDS.md, as in probes/core/media_analysis.py): silence below -50 dBFS for
>= 2 s (AWS MediaLive audio-silence failover default) fails; more than 6 consecutive
full-scale samples is clipping (testrtc ``mictest.js``), a warning before air (turn the
gain down); an RMS level below -40 dBFS warns as "very quiet" (broadcast practice:
dialogue normalised to -23 LUFS / EBU R128 sits around -20 to -30 dBFS RMS).

Devices: an ALSA capture device is read by PyAV's ``alsa`` demuxer
(``url: "alsa:hw:1,0"`` is opened as format ``alsa``, input ``hw:1,0``); not exercised in
tests here (no sound card on this machine). Feeds: any URL PyAV opens.
"""

from __future__ import annotations

from probes.core.media_analysis import MediaFindings
from probes.core.studio import Finding, Status
from probes.faults import Fault

QUIET_DBFS = -40.0


def assess_audio(m: MediaFindings | None, component: str, *, expected: bool, title: str = "Audio",
                 silence_dbfs: float = -50.0) -> list[Finding]:
    """Findings from one capture's media findings (``None``/no audio: missing when expected)."""
    if m is None or m.audio_rms_dbfs is None:
        if not expected:
            return []
        return [Finding("source.audio", component, Status.FAIL, f"{title} level", "no audio in the feed",
                        "an audio track", "config studio.sources[].expect_audio",
                        "embed audio in the feed: check the mixer output and the encoder's audio input",
                        Fault.SILENT_AUDIO)]
    out: list[Finding] = []
    names = m.fault_names
    lvl = m.audio_rms_dbfs
    src = "AWS MediaLive audio-silence failover (-50 dBFS, 2 s); EBU R128 programme level"
    if Fault.SILENT_AUDIO in names:
        st, fault = Status.FAIL, Fault.SILENT_AUDIO
        fix = (f"the audio is silent ({lvl:.0f} dBFS for {m.silence_s:.1f} s): check the mixer output, "
               f"the mute buttons and the embedding")
    elif lvl < QUIET_DBFS:
        st, fault = Status.WARN, Fault.AUDIO_QUIET
        fix = f"the audio is very quiet ({lvl:.0f} dBFS): raise the mixer output or the encoder's input gain"
    else:
        st, fault, fix = Status.PASS, None, ""
    out.append(Finding("source.audio", component, st, f"{title} level", f"{lvl:.1f} dBFS",
                       f"> {silence_dbfs:g} dBFS (silence), > {QUIET_DBFS:g} dBFS (quiet)", src, fix, fault, lvl,
                       silence_dbfs, {"audio_level_dbfs": lvl, "silence_s": m.silence_s}))
    clip = m.clipped_runs
    st = Status.WARN if clip else Status.PASS
    out.append(Finding("source.clipping", component, st, f"{title} clipping", f"{clip} clipped run(s)",
                       "none (> 6 full-scale samples in a row)", "testrtc mictest.js",
                       f"the audio clips ({clip} runs at full scale): lower the input gain by 6 dB"
                       if clip else "", Fault.AUDIO_CLIPPING if clip else None, float(clip), 0.0,
                       {"clipped_runs": float(clip)}))
    return out

