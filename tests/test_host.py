"""Host probe against recorded /proc and /sys trees (tests/fixtures/host/README.md)."""

from __future__ import annotations

from pathlib import Path

from probes import host
from probes.base import ProbeContext, ProbeTarget, State
from probes.core.studio import Status
from probes.host import HostConfig, assess, snapshot

FIX = Path(__file__).parent / "fixtures" / "host"


def _cfg(**kw) -> HostConfig:
    base = dict(proc_root=str(FIX / "t0" / "proc"), sys_root=str(FIX / "sys"), nics=["eth0"],
                encoder_processes=["obs", "ffmpeg"])
    base.update(kw)
    return HostConfig(**base)


def by_check(findings):
    return {f.check: f for f in findings}


def test_healthy_host_from_recorded_trees(tmp_path):
    cfg = _cfg(recording_path=str(tmp_path), disk_min_free_bytes=1024)
    prev = snapshot(cfg)
    cur = snapshot(cfg, proc_root=str(FIX / "t1_idle" / "proc"))
    f = by_check(assess(prev, cur, 1.0, cfg))
    assert abs(f["host.cpu"].value - 0.20) < 0.01 and f["host.cpu"].status is Status.PASS
    assert len(cur.per_core) == len(prev.per_core) >= 1
    assert f["host.memory"].status is Status.PASS and cur.memory_total > cur.memory_available > 0
    assert f["host.disk"].status is Status.PASS and cur.disk_free > 0
    assert f["host.nic.eth0"].status is Status.PASS and "1000 Mbit/s" in f["host.nic.eth0"].measured
    assert f["host.temperature"].status is Status.PASS and f["host.temperature"].value == 52.0
    assert f["host.power"].status is Status.PASS and f["host.power"].measured.startswith("mains")
    obs = f["host.process.obs"]
    assert obs.status is Status.PASS and abs(obs.value - 0.5) < 1e-6  # 50 ticks of 10 ms in 1 s
    # the share is taken over the kernel's interval (100 ticks per core between the trees),
    # not the wall time between the reads: a 0.05-s read gap must not make it 1000 %
    quick = by_check(assess(prev, cur, 0.05, cfg))["host.process.obs"]
    assert abs(quick.value - 0.5) < 1e-6 and "50 % of a core" in quick.measured
    assert f["host.process.ffmpeg"].status is Status.PASS


def test_overloaded_host_unplugged_nic_on_battery_dead_encoder(tmp_path):
    cfg = _cfg(sys_root=str(FIX / "sys_bad"), recording_path=str(tmp_path), disk_min_free_bytes=1 << 60)
    prev = snapshot(cfg)
    cur = snapshot(cfg, proc_root=str(FIX / "t1_busy" / "proc"))
    f = by_check(assess(prev, cur, 1.0, cfg))
    cpu = f["host.cpu"]
    assert cpu.status is Status.FAIL and cpu.fault == "host_overload" and "CPU at 97 %" in cpu.fix
    assert f["host.process.ffmpeg"].status is Status.FAIL and f["host.process.ffmpeg"].fault == "encoder_down"
    assert "start ffmpeg" in f["host.process.ffmpeg"].fix
    assert f["host.nic.eth0"].status is Status.FAIL and f["host.nic.eth0"].fault == "nic_down"
    assert f["host.power"].status is Status.FAIL and "mains" in f["host.power"].fix
    assert f["host.temperature"].status is Status.WARN  # 101 °C >= crit 100
    assert f["host.disk"].status is Status.FAIL and "free space" in f["host.disk"].fix


def test_nic_errors_growing_warn():
    cfg = _cfg()
    prev = snapshot(cfg)
    cur = snapshot(cfg)
    cur.nics["eth0"].drops += 40
    f = by_check(assess(prev, cur, 1.0, cfg))
    assert f["host.nic.eth0"].status is Status.WARN and f["host.nic.eth0"].fault == "nic_errors"


async def test_probe_evidence_and_samples():
    cfg = _cfg(proc_root_later=str(FIX / "t1_busy" / "proc"), cpu_sample_s=0.01)
    t = ProbeTarget("host", "main", "studio", "host", cfg)
    res = await host.probe(t, ProbeContext(state={}))
    assert res.ok
    ev = res.evidence[0]
    assert (ev.stage, ev.component, ev.state, ev.fault) == ("studio", "host", State.DOWN, "encoder_down")
    names = {s.name: s for s in res.samples}
    assert abs(names["signalpath_host_cpu_ratio"].value - 0.97) < 0.01
    up = {s.labels["component"]: s.value for s in res.samples if s.name == "signalpath_encoder_process_up"}
    assert up == {"obs": 1.0, "ffmpeg": 0.0}


def test_real_host_reads():
    cfg = HostConfig(recording_path="/", encoder_processes=["python3", "python"])
    s = snapshot(cfg)
    assert s.cpu_total > 0 and s.memory_total > 0 and s.disk_free is not None
    assert "lo" in s.nics


def test_an_unreadable_recording_folder_says_why(tmp_path):
    """Missing, not a folder, or no permission: three different fixes, never a bare "not readable"."""
    from probes.host import _why_unreadable

    missing = _cfg(recording_path=str(tmp_path / "gone"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    not_a_folder = _cfg(recording_path=str(a_file / "sub"))
    for cfg, measured, fix in ((missing, "folder missing", "does not exist: mount the recording volume"),
                               (not_a_folder, "not readable: not a folder", "is not a folder")):
        prev = snapshot(cfg)
        f = by_check(assess(prev, snapshot(cfg), 1.0, cfg))["host.disk"]
        assert f.status is Status.FAIL and f.measured == measured and fix in f.fix, f
    # Root reads every folder, so the permission case is the mapping itself (statvfs raises it).
    assert _why_unreadable(PermissionError(13, "Permission denied")) == "permission denied"
