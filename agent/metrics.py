"""Prometheus export: the metric catalog, the latest-results store, one custom collector.

Probes return :class:`probes.base.Sample` values; the runner hands each target's
latest set to :class:`MetricStore`; :class:`SignalpathCollector` recomputes the
families from the store on every scrape (client_python's custom-collector habit) on a
registry the caller injects — no module-level metric objects.

``CATALOG`` is the contract (name → type, help, labels); dashboards/README.md
repeats it for people and a test holds both equal to a real scrape. ``site`` is
added to every series by the collector.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from probes.base import Sample


@dataclass(frozen=True, slots=True)
class MetricDef:
    type: str  # gauge | counter | histogram
    help: str
    labels: tuple[str, ...]


_T = ("stream", "stage", "component")
_TR = _T + ("rendition",)

CATALOG: dict[str, MetricDef] = {
    # envelope (runner)
    "signalpath_probe_success": MetricDef("gauge", "1 if the last attempt of the probe succeeded, else 0.",
                                          _T + ("probe",)),
    "signalpath_probe_duration_seconds": MetricDef("gauge", "Duration of the last probe attempt.", _T + ("probe",)),
    "signalpath_probe_failures_total": MetricDef("counter", "Failed probe attempts by reason.",
                                                 _T + ("probe", "reason")),
    "signalpath_stage_healthy": MetricDef("gauge", "1 if the stage/component is ok, 0 if degraded or down.", _T),
    # the agent itself (agent/app.py, agent/shard.py; agent/selfwatch.py)
    "signalpath_agent_info": MetricDef("gauge", "1 for each running agent: its shard of the streams ('I/N', empty "
                                       "when it watches them all) and its version.", ("shard", "version")),
    "signalpath_agent_loop_lag_seconds": MetricDef("gauge", "Longest lateness of the agent's own event loop "
                                                   "(a 50-ms timer's wake-up) in the last 10-20 s.", ()),
    "signalpath_probe_schedule_lag_seconds": MetricDef("gauge", "Longest lateness of a probe job's tick against its "
                                                       "schedule in the last 10-20 s.", ("probe",)),
    "signalpath_agent_shed_level": MetricDef("gauge", "Optional work the agent sheds because it is behind: 0 none, "
                                             "1 latency fast polls, 2 and media analysis, 3 and virtual players.", ()),
    # HLS
    "signalpath_playlist_age_seconds": MetricDef("gauge", "Seconds since the rendition's media sequence last "
                                                 "advanced.", _TR),
    "signalpath_playlist_fetch_seconds": MetricDef("gauge", "Media playlist fetch time by phase "
                                                   "(connect, first_byte, transfer).", _TR + ("phase",)),
    "signalpath_manifest_lead_seconds": MetricDef("gauge", "Media seconds the compared manifest's newest segment "
                                                  "is ahead of the origin manifest's (negative: behind); "
                                                  "streams[].compare.", _TR),
    "signalpath_playlist_media_sequence": MetricDef("gauge", "Sequence number of the newest segment listed.", _TR),
    "signalpath_playlist_target_duration_seconds": MetricDef("gauge", "EXT-X-TARGETDURATION.", _TR),
    "signalpath_playlist_anomalies_total": MetricDef("counter", "Continuity anomalies seen in media playlists.",
                                                     _TR + ("fault",)),
    "signalpath_segment_download_ratio": MetricDef("gauge", "Download time / media duration of the newest segment "
                                                   "(> 1: a viewer would stall).", _TR),
    "signalpath_segment_first_byte_seconds": MetricDef("gauge", "Time to the first byte of the newest segment.", _TR),
    "signalpath_segment_download_seconds": MetricDef("gauge", "Download time of the newest segment.", _TR),
    "signalpath_segment_throughput_bytes_per_second": MetricDef("gauge", "Download throughput of the newest "
                                                                "segment.", _TR),
    "signalpath_segment_errors_total": MetricDef("counter", "Segment fetches that failed, by reason.",
                                                 _TR + ("reason",)),
    "signalpath_live_latency_seconds": MetricDef("gauge", "Now minus the end of the newest segment by "
                                                 "EXT-X-PROGRAM-DATE-TIME.", _TR),
    "signalpath_edge_lag_segments": MetricDef("gauge", "Segments an edge is behind the origin.", _TR),
    # ingest (probes/rtmp.py)
    "signalpath_ingest_connect_seconds": MetricDef("gauge", "Ingest connection set-up time by phase "
                                                   "(RTMP: tcp, handshake, connect, create_stream, publish; "
                                                   "WHIP: signal, ice, dtls, first_rtcp).",
                                                   _T + ("phase",)),
    "signalpath_ingest_upload_bits_per_second": MetricDef("gauge", "Achieved upload rate of the test publish.", _T),
    "signalpath_ingest_publisher_present": MetricDef("gauge", "1 if the ingest lists a publisher for the stream "
                                                     "(nginx-rtmp /stat).", _T),
    "signalpath_ingest_input_bits_per_second": MetricDef("gauge", "Bitrate the ingest receives (nginx-rtmp "
                                                         "/stat bw_in).", _T),
    # WebRTC (probes/whip.py, probes/whep.py): WHIP publish at stage ingest, WHEP playback at stage playback
    "signalpath_webrtc_rtt_seconds": MetricDef("gauge", "Round-trip time to the WebRTC peer (sender's "
                                               "remote-inbound-rtp roundTripTime).", _T),
    "signalpath_webrtc_jitter_seconds": MetricDef("gauge", "RTP interarrival jitter in seconds (RFC 3550; RTP "
                                                  "clock units / 90000 for video).", _T),
    "signalpath_webrtc_packets_lost_total": MetricDef("counter", "Packets lost in test sessions, not repaired by "
                                                      "retransmission (RFC 3550 cumulative lost).", _T),
    "signalpath_webrtc_freezes_total": MetricDef("counter", "Video freezes in WHEP test sessions (W3C "
                                                 "webrtc-stats freezeCount rule).", _T),
    "signalpath_webrtc_time_to_first_frame_seconds": MetricDef("gauge", "WHEP offer POST to the first decoded "
                                                               "video frame.", _T),
    # studio (probes/encoder_status.py)
    "signalpath_encoder_running": MetricDef("gauge", "1 if the studio encoder runs and its output grows.", _T),
    # playback (probes/playback.py): simulated viewers per edge and rendition
    "signalpath_playback_startup_seconds": MetricDef("gauge", "Startup time of the current simulated viewer "
                                                     "session: request to first frame (CTA-2066 "
                                                     "initialStartupTime).", _TR),
    "signalpath_playback_stalls_total": MetricDef("counter", "Stalls of simulated viewers (buffer dry >= 1.25 s, "
                                                  "hls.js).", _TR),
    "signalpath_playback_stall_seconds_total": MetricDef("counter", "Seconds simulated viewers spent stalled.",
                                                         _TR),
    "signalpath_playback_rebuffer_ratio": MetricDef("gauge", "Stalled / (watched + stalled) time of the current "
                                                    "simulated viewer session (0-1).", _TR),
    # media content (probes/media.py), per analysed rendition at the origin
    "signalpath_video_frozen": MetricDef("gauge", "1 if the newest analysed segment shows frozen video "
                                         "(>= 2 s of identical frames), else 0.", _TR),
    "signalpath_video_black": MetricDef("gauge", "1 if the newest analysed segment shows black video "
                                        "(>= 2 s), else 0.", _TR),
    "signalpath_audio_level_dbfs": MetricDef("gauge", "RMS audio level of the newest analysed segment, dBFS.",
                                             _TR),
    "signalpath_av_sync_offset_seconds": MetricDef("gauge", "Audio start minus video start in the newest "
                                                   "analysed segment (positive: audio late).", _TR),
    "signalpath_keyframe_interval_seconds": MetricDef("gauge", "Longest key-frame interval seen in the newest "
                                                      "analysed segment.", _TR),
    "signalpath_segment_decode_errors_total": MetricDef("counter", "Decode errors (corrupt packets or frames, "
                                                        "undecodable data) in analysed segments.", _TR),
    # studio (probes/host.py, gpu.py, video_source.py, network.py)
    "signalpath_host_cpu_ratio": MetricDef("gauge", "Encoder host CPU busy ratio (0-1) over the last interval.", _T),
    "signalpath_host_memory_available_bytes": MetricDef("gauge", "Encoder host memory available (MemAvailable).", _T),
    "signalpath_disk_free_bytes": MetricDef("gauge", "Free bytes on the recording volume.", _T),
    "signalpath_encoder_process_up": MetricDef("gauge", "1 if the named encoder process (component) runs, else 0.",
                                               _T),
    "signalpath_gpu_utilization_ratio": MetricDef("gauge", "GPU utilization (NVML, 0-1).", _T),
    "signalpath_gpu_encoder_utilization_ratio": MetricDef("gauge", "GPU video encoder (NVENC) utilization (0-1).",
                                                          _T),
    "signalpath_gpu_encoder_sessions": MetricDef("gauge", "Active GPU encoder sessions.", _T),
    "signalpath_gpu_memory_used_bytes": MetricDef("gauge", "GPU memory used.", _T),
    "signalpath_gpu_temperature_celsius": MetricDef("gauge", "GPU core temperature.", _T),
    "signalpath_source_present": MetricDef("gauge", "1 if the capture device is present / the feed delivers, "
                                           "else 0.", _T),
    "signalpath_source_frame_rate": MetricDef("gauge", "Measured frame rate of a studio feed (frames/s).", _T),
    "signalpath_source_audio_level_dbfs": MetricDef("gauge", "RMS audio level of a studio feed, dBFS.", _T),
    "signalpath_network_rtt_seconds": MetricDef("gauge", "Median TCP connect round trip to the ingest.", _T),
    "signalpath_network_jitter_seconds": MetricDef("gauge", "Mean change between consecutive RTT samples.", _T),
    "signalpath_uplink_bits_per_second": MetricDef("gauge", "Measured uplink throughput (speed-test upload).", _T),
    "signalpath_clock_offset_seconds": MetricDef("gauge", "Local clock minus NTP server time.", _T),
    # latency (probes/latency.py); method = beacon | pdt: where the capture time came from
    "signalpath_stage_latency_seconds": MetricDef("gauge", "Time a stage adds to the newest measured segment: "
                                                  "transcode/transcoder = origin first-seen - capture of its last "
                                                  "frame; cdn/<edge> = edge first-seen - origin first-seen.",
                                                  _T + ("method",)),
    "signalpath_glass_to_glass_seconds": MetricDef("gauge", "Edge first-seen minus capture time of the last frame "
                                                   "of the newest measured segment.",
                                                   ("stream", "component", "rendition", "method")),
    # incidents (agent/incident_sink.py)
    "signalpath_incidents_open": MetricDef("gauge", "Open root-cause incidents.",
                                           _T + ("fault", "severity")),
    "signalpath_time_to_localize_seconds": MetricDef("histogram", "Seconds from a fault's first bad evidence to "
                                                     "its localization.", ("stream", "stage")),
    # broadcasts (agent/schedule.py)
    "signalpath_broadcast_live": MetricDef("gauge", "1 while a scheduled broadcast is on air and its stream is "
                                           "live at the origin, 0 when it is not (or not measured).",
                                           ("broadcast", "stream")),
    # viewer complaints (agent/complaints.py)
    "signalpath_complaints_total": MetricDef("counter", "Viewer complaints recorded by tech support, by type "
                                             "(agent/complaints.py ComplaintType).", ("stream", "type")),
}


def _key(labels: dict[str, str], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(labels.get(n, "")) for n in names)


class MetricStore:
    """Latest gauge samples per source (a probe target), cumulative counters, histograms.

    Thread-safe: scrapes may come from another thread than the event loop.
    """

    def __init__(self, catalog: dict[str, MetricDef] | None = None) -> None:
        self.catalog = CATALOG if catalog is None else catalog
        self._lock = threading.Lock()
        self._latest: dict[str, list[Sample]] = {}
        self._counters: dict[str, dict[tuple[str, ...], float]] = {}
        self._hist: dict[str, tuple[tuple[float, ...], dict[tuple[str, ...], list[float]]]] = {}

    def _check(self, s: Sample) -> None:
        d = self.catalog.get(s.name)
        if d is None:
            raise KeyError(f"metric {s.name!r} is not in the catalog")

    def replace(self, source: str, samples: Iterable[Sample]) -> None:
        """Set ``source``'s gauges to exactly these; add its counter deltas."""
        gauges: list[Sample] = []
        with self._lock:
            for s in samples:
                self._check(s)
                if s.kind == "inc":
                    d = self.catalog[s.name]
                    c = self._counters.setdefault(s.name, {})
                    k = _key(dict(s.labels), d.labels)
                    c[k] = c.get(k, 0.0) + s.value
                else:
                    gauges.append(s)
            self._latest[source] = gauges

    def inc(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        self.replace_counter(Sample(name, labels, value, "inc"))

    def replace_counter(self, s: Sample) -> None:
        with self._lock:
            self._check(s)
            c = self._counters.setdefault(s.name, {})
            k = _key(dict(s.labels), self.catalog[s.name].labels)
            c[k] = c.get(k, 0.0) + s.value

    def define_histogram(self, name: str, buckets: tuple[float, ...]) -> None:
        with self._lock:
            self._hist.setdefault(name, (buckets, {}))

    def observe(self, name: str, labels: dict[str, str], value: float) -> None:
        with self._lock:
            buckets, series = self._hist[name]
            k = _key(labels, self.catalog[name].labels)
            counts = series.setdefault(k, [0.0] * (len(buckets) + 2))  # buckets..., +Inf, sum
            for i, b in enumerate(buckets):
                if value <= b:
                    counts[i] += 1
            counts[len(buckets)] += 1
            counts[len(buckets) + 1] += value

    def drop(self, source: str) -> None:
        with self._lock:
            self._latest.pop(source, None)

    def snapshot(self) -> tuple[dict[str, list[Sample]], dict[str, dict[tuple[str, ...], float]], dict]:
        with self._lock:
            return (dict(self._latest), {k: dict(v) for k, v in self._counters.items()},
                    {k: (b, {kk: list(vv) for kk, vv in s.items()}) for k, (b, s) in self._hist.items()})


class SignalpathCollector(Collector):
    """Yields every catalog family from the store at scrape time, ``site`` first."""

    def __init__(self, store: MetricStore, site: str) -> None:
        self.store = store
        self.site = site

    def describe(self) -> list[Metric]:
        return []  # families are dynamic; registering must not call collect() early

    def collect(self) -> Iterator[Metric]:
        latest, counters, hists = self.store.snapshot()
        cat = self.store.catalog
        families: dict[str, Metric] = {}
        for name, d in cat.items():
            labels = ["site", *d.labels]
            if d.type == "gauge":
                families[name] = GaugeMetricFamily(name, d.help, labels=labels)
            elif d.type == "counter":
                families[name] = CounterMetricFamily(name.removesuffix("_total"), d.help, labels=labels)
            else:
                families[name] = HistogramMetricFamily(name, d.help, labels=labels)
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for samples in latest.values():
            for s in samples:
                d = cat[s.name]
                k = _key(dict(s.labels), d.labels)
                if (s.name, k) in seen:
                    continue
                seen.add((s.name, k))
                families[s.name].add_metric([self.site, *k], s.value)  # type: ignore[attr-defined]
        for name, series in counters.items():
            for k, v in series.items():
                families[name].add_metric([self.site, *k], v)  # type: ignore[attr-defined]
        for name, (buckets, series) in hists.items():
            for k, counts in series.items():
                bl = [(repr(float(b)) if b != int(b) else f"{b:g}", counts[i]) for i, b in enumerate(buckets)]
                bl.append(("+Inf", counts[len(buckets)]))
                families[name].add_metric([self.site, *k], bl, counts[len(buckets) + 1])  # type: ignore
        for fam in families.values():
            if fam.samples:
                yield fam
