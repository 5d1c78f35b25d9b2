"""Encoder host probe: is the machine that encodes the stream healthy enough to stay on air?

Measured (psutil for /proc, plain file reads for /sys):

- CPU busy ratio, total and per core, over the interval between two snapshots of
  ``/proc/stat`` (the previous attempt's, or one ``cpu_sample_s`` earlier);
- memory available (``MemAvailable``), free disk on the recording volume (``statvfs``);
- each NIC's link state (``/sys/class/net/<if>/operstate``, ``carrier``), speed, and
  errors and drops (``statistics/{rx,tx}_{errors,dropped}``) that grew since the last look;
- temperatures (``/sys/class/hwmon/*/temp*_input``) and battery
  (``/sys/class/power_supply/*`` of type Battery) where present: absent is not a fault;
- named encoder processes (obs, ffmpeg, vMix, ...) alive, and their CPU share.

Thresholds (defaults; each configurable):

- CPU >= 80 % warns, >= 95 % fails: OBS Studio reports "Encoding overloaded" when the
  encoder cannot keep up with the frame clock, and its troubleshooting guide tells users
  to keep CPU below ~80 % on the encoding machine (common encoder guidance); a single
  core pinned >= 98 % warns (x264 / audio threads stall on one core);
- memory available < 10 % of total warns, < 5 % fails (the kernel starts reclaiming hard;
  Linux ``MemAvailable`` definition, Documentation/filesystems/proc.rst);
- recording volume free < 2 x ``disk_min_free_bytes`` warns, below it fails;
- a temperature at or above its ``crit`` (else ``temperature_warn_c``, 90 °C) warns;
- on battery warns, battery < 20 % fails (broadcast practice: encode on mains power);
- a NIC in ``nics`` not ``up`` fails; errors or drops that grew since the last check warn.

Platform seam (STYLE.md 11): on Linux psutil reads ``/proc`` under ``psutil.PROCFS_PATH``;
:class:`HostConfig` ``proc_root`` and ``sys_root`` point the probe at a recorded tree
instead (tests/fixtures/host). ``PROCFS_PATH`` is a psutil global: the probe swaps it
only while it reads, under a lock, and only when ``proc_root`` is set. Other platforms:
psutil gives CPU, memory, disk and processes; the /sys readings come back empty.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.config import StrictModel
from probes.core.studio import STAGE, Finding, Status, evidence_from, grade
from probes.faults import Fault

COMPONENT = "host"
_PROCFS_LOCK = threading.Lock()
GiB = 1024**3


class HostConfig(StrictModel):
    """``studio.host``: the encoder host checks (defaults cite the module docstring)."""

    cpu_warn_ratio: float = Field(0.80, gt=0, le=1)
    cpu_fail_ratio: float = Field(0.95, gt=0, le=1)
    core_warn_ratio: float = Field(0.98, gt=0, le=1)
    memory_warn_ratio: float = Field(0.10, ge=0, le=1, description="available / total below this warns")
    memory_fail_ratio: float = Field(0.05, ge=0, le=1)
    recording_path: str | None = Field(None, description="a folder on the recording volume")
    disk_min_free_bytes: int = Field(20 * GiB, ge=0)
    nics: list[str] = Field(default_factory=list, description="interfaces that must be up (e.g. eth0)")
    temperature_warn_c: float = Field(90.0, gt=0)
    battery_fail_ratio: float = Field(0.20, ge=0, le=1)
    encoder_processes: list[str] = Field(default_factory=list, description="process names that must run")
    cpu_sample_s: float = Field(0.5, gt=0, le=10, description="first attempt: seconds between CPU snapshots")
    proc_root: str | None = Field(None, description="recorded /proc tree (tests); None: the real /proc")
    proc_root_later: str | None = Field(None, description="tests: a second recorded /proc for the later snapshot")
    sys_root: str = "/sys"


# ------------------------------------------------------------------ snapshots (I/O)


@dataclass(slots=True)
class NicStats:
    name: str
    operstate: str
    carrier: int | None
    speed_mbps: float | None
    errors: int
    drops: int


@dataclass(slots=True)
class HostSnapshot:
    """Everything one look at the host returns; pure data, compared by :func:`assess`."""

    cpu_busy: float  # seconds of non-idle CPU time since boot, all cores
    cpu_total: float
    per_core: list[tuple[float, float]]  # (busy, total) per core
    memory_total: int
    memory_available: int
    processes: dict[str, tuple[int, float]]  # name -> (count, cpu seconds)
    disk_free: int | None = None
    disk_total: int | None = None
    disk_error: str | None = None  # why disk_free is None: "missing", "not a folder", "permission denied"
    nics: dict[str, NicStats] = field(default_factory=dict)
    temperatures: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # label -> (c, crit)
    battery: tuple[float, bool] | None = None  # (ratio, on mains)


def _busy_total(t: Any) -> tuple[float, float]:
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    # guest time is already counted in user (proc(5)): leave it out of the total
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, total


def _why_unreadable(exc: OSError) -> str:
    """A folder that cannot be read, in the crew's words: missing, not a folder, or no permission."""
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, NotADirectoryError):
        return "not a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or exc.__class__.__name__


def snapshot(cfg: HostConfig, *, proc_root: str | None = None) -> HostSnapshot:
    """Read the host once (blocking; call in a thread)."""
    root = proc_root if proc_root is not None else cfg.proc_root
    if root is not None:
        with _PROCFS_LOCK:
            saved = psutil.PROCFS_PATH
            psutil.PROCFS_PATH = root
            try:
                snap = _read_proc(cfg)
            finally:
                psutil.PROCFS_PATH = saved
    else:
        snap = _read_proc(cfg)
    if cfg.recording_path:
        try:
            du = psutil.disk_usage(cfg.recording_path)
            snap.disk_free, snap.disk_total = int(du.free), int(du.total)
        except OSError as exc:
            snap.disk_free = None
            snap.disk_error = _why_unreadable(exc)
    sysfs = Path(cfg.sys_root)
    snap.nics = _read_nics(sysfs / "class" / "net")
    snap.temperatures = _read_hwmon(sysfs / "class" / "hwmon")
    snap.battery = _read_battery(sysfs / "class" / "power_supply")
    return snap


def _read_proc(cfg: HostConfig) -> HostSnapshot:
    busy, total = _busy_total(psutil.cpu_times())
    per_core = [_busy_total(t) for t in psutil.cpu_times(percpu=True)]
    vm = psutil.virtual_memory()
    wanted = {n.lower() for n in cfg.encoder_processes}
    procs: dict[str, tuple[int, float]] = {}
    if wanted:
        # fresh Process objects: process_iter() caches them, and each keeps the
        # PROCFS_PATH it was made under
        for pid in psutil.pids():
            try:
                p = psutil.Process(pid)
                name = p.name().lower()
                base = name.removesuffix(".exe")
                hit = name if name in wanted else base if base in wanted else None
                if hit is None:
                    continue
                ct = p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            cpu = ct.user + ct.system
            count, secs = procs.get(hit, (0, 0.0))
            procs[hit] = (count + 1, secs + cpu)
    return HostSnapshot(busy, total, per_core, int(vm.total), int(vm.available), procs)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read_nics(base: Path) -> dict[str, NicStats]:
    out: dict[str, NicStats] = {}
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        st = d / "statistics"
        errors = sum(_int(st / n) or 0 for n in ("rx_errors", "tx_errors"))
        drops = sum(_int(st / n) or 0 for n in ("rx_dropped", "tx_dropped"))
        speed = _int(d / "speed")  # reading speed of a down link raises EINVAL: None
        out[d.name] = NicStats(d.name, _read(d / "operstate") or "unknown", _int(d / "carrier"),
                               float(speed) if speed is not None and speed > 0 else None, errors, drops)
    return out


def _read_hwmon(base: Path) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    if not base.is_dir():
        return out
    for hw in sorted(base.iterdir()):
        chip = _read(hw / "name") or hw.name
        for inp in sorted(hw.glob("temp*_input")):
            stem = inp.name.removesuffix("_input")
            milli = _int(inp)
            if milli is None:
                continue
            crit = _int(hw / f"{stem}_crit")
            label = _read(hw / f"{stem}_label") or stem
            out[f"{chip}/{label}"] = (milli / 1000.0, crit / 1000.0 if crit else None)
    return out


def _read_battery(base: Path) -> tuple[float, bool] | None:
    if not base.is_dir():
        return None
    mains = False
    battery: float | None = None
    for ps in sorted(base.iterdir()):
        kind = _read(ps / "type")
        if kind == "Mains" and _int(ps / "online") == 1:
            mains = True
        elif kind == "Battery":
            cap = _int(ps / "capacity")
            status = _read(ps / "status") or ""
            if cap is not None:
                battery = cap / 100.0
            if status in ("Charging", "Full", "Not charging"):
                mains = True
    return None if battery is None else (battery, mains)


# ------------------------------------------------------------------ assessment (pure)


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def _gib(x: float) -> str:
    return f"{x / GiB:.1f} GiB"


def assess(prev: HostSnapshot, cur: HostSnapshot, dt: float, cfg: HostConfig) -> list[Finding]:
    """Findings from two snapshots ``dt`` wall seconds apart (pure)."""
    out: list[Finding] = []
    src_cpu = "OBS Studio 'Encoding overloaded' guidance: keep CPU below ~80 % (common encoder guidance)"
    dtotal = cur.cpu_total - prev.cpu_total
    cpu = (cur.cpu_busy - prev.cpu_busy) / dtotal if dtotal > 0 else 0.0
    cpu = min(1.0, max(0.0, cpu))
    cores = []
    for (b0, t0), (b1, t1) in zip(prev.per_core, cur.per_core, strict=False):  # a core gone offline: compare the rest
        cores.append(min(1.0, max(0.0, (b1 - b0) / (t1 - t0))) if t1 > t0 else 0.0)
    st = grade(cpu, cfg.cpu_warn_ratio, cfg.cpu_fail_ratio)
    figures = {"cpu_ratio": cpu, "cores": float(len(cores))}
    fix = ""
    if st is not Status.PASS:
        fix = (f"close other programs on the encoder host or use a faster encoder preset / lower resolution: "
               f"CPU at {_pct(cpu)}, keep it under {_pct(cfg.cpu_warn_ratio)}")
    out.append(Finding("host.cpu", COMPONENT, st, "Host CPU", _pct(cpu), f"< {_pct(cfg.cpu_warn_ratio)}",
                       src_cpu, fix, Fault.HOST_OVERLOAD if st is not Status.PASS else None, cpu,
                       cfg.cpu_warn_ratio, figures))
    hot = [i for i, c in enumerate(cores) if c >= cfg.core_warn_ratio]
    busiest = max(cores) if cores else 0.0
    st = Status.WARN if hot and st is Status.PASS else Status.PASS
    out.append(Finding("host.cpu_core", COMPONENT, st, "Busiest CPU core", f"{_pct(busiest)} (core {cores.index(busiest) if cores else 0})",
                       f"< {_pct(cfg.core_warn_ratio)}", src_cpu,
                       "a single core is saturated: check for a runaway process or an encoder running single-threaded"
                       if st is Status.WARN else "", Fault.HOST_OVERLOAD if st is Status.WARN else None, busiest,
                       cfg.core_warn_ratio, {"busiest_core_ratio": busiest}))

    avail = cur.memory_available / cur.memory_total if cur.memory_total else 0.0
    st = grade(avail, cfg.memory_warn_ratio, cfg.memory_fail_ratio, higher_is_worse=False)
    out.append(Finding("host.memory", COMPONENT, st, "Memory available", f"{_gib(cur.memory_available)} ({_pct(avail)})",
                       f">= {_pct(cfg.memory_warn_ratio)}", "Linux MemAvailable (proc(5)); kernel reclaim pressure",
                       f"close programs to free memory: {_gib(cur.memory_available)} available of "
                       f"{_gib(cur.memory_total)}" if st is not Status.PASS else "",
                       Fault.HOST_OVERLOAD if st is not Status.PASS else None, float(cur.memory_available),
                       cfg.memory_warn_ratio * cur.memory_total,
                       {"memory_available_bytes": float(cur.memory_available)}))

    if cfg.recording_path:
        if cur.disk_free is None:
            why = cur.disk_error or "not readable"
            fix = {
                "missing": f"the folder {cfg.recording_path} does not exist: mount the recording volume, "
                           "create the folder, or fix studio.host.recording_path",
                "permission denied": f"the agent may not read {cfg.recording_path} (permission denied): give its "
                                     "user access to the folder, or fix studio.host.recording_path",
            }.get(why, f"{cfg.recording_path} is {why}: mount the recording volume or fix studio.host.recording_path")
            measured = "folder missing" if why == "missing" else f"not readable: {why}"
            out.append(Finding("host.disk", COMPONENT, Status.FAIL, "Recording volume", measured,
                               "a mounted, readable folder", "config studio.host.recording_path", fix,
                               Fault.DISK_LOW))
        else:
            st = grade(cur.disk_free, 2 * cfg.disk_min_free_bytes, cfg.disk_min_free_bytes, higher_is_worse=False)
            out.append(Finding("host.disk", COMPONENT, st, "Recording volume free", _gib(cur.disk_free),
                               f">= {_gib(2 * cfg.disk_min_free_bytes)}",
                               "config studio.host.disk_min_free_bytes (hours of recording at your bitrate)",
                               f"free space on the recording volume or switch to another drive: "
                               f"{_gib(cur.disk_free)} free, {_gib(2 * cfg.disk_min_free_bytes)} wanted"
                               if st is not Status.PASS else "", Fault.DISK_LOW if st is not Status.PASS else None,
                               float(cur.disk_free), float(cfg.disk_min_free_bytes),
                               {"disk_free_bytes": float(cur.disk_free)}))

    for name in cfg.nics:
        nic = cur.nics.get(name)
        if nic is None:
            out.append(Finding(f"host.nic.{name}", COMPONENT, Status.FAIL, f"Network interface {name}", "not present",
                               "present and up", "config studio.host.nics",
                               f"check that {name} exists (cable/adapter plugged in, driver loaded)", Fault.NIC_DOWN))
            continue
        up = nic.operstate in ("up", "unknown") and nic.carrier != 0
        if not up:
            out.append(Finding(f"host.nic.{name}", COMPONENT, Status.FAIL, f"Network interface {name}",
                               f"link {nic.operstate}", "link up", "config studio.host.nics",
                               f"plug in the network cable of {name} or check the switch port", Fault.NIC_DOWN))
            continue
        old = prev.nics.get(name)
        grew_e = nic.errors - old.errors if old else 0
        grew_d = nic.drops - old.drops if old else 0
        st = Status.WARN if grew_e > 0 or grew_d > 0 else Status.PASS
        speed = f", {nic.speed_mbps:.0f} Mbit/s" if nic.speed_mbps else ""
        out.append(Finding(f"host.nic.{name}", COMPONENT, st, f"Network interface {name}",
                           f"up{speed}, +{grew_e} errors, +{grew_d} drops", "up, no new errors or drops",
                           "kernel interface statistics (/sys/class/net)",
                           f"{name} is losing packets: replace the cable or check the switch port and duplex"
                           if st is Status.WARN else "", Fault.NIC_ERRORS if st is Status.WARN else None,
                           float(grew_e + grew_d), 0.0,
                           {f"nic_{name}_errors": float(nic.errors), f"nic_{name}_drops": float(nic.drops)}))

    if cur.temperatures:
        label, (temp, crit) = max(cur.temperatures.items(), key=lambda kv: kv[1][0])
        limit = crit if crit else cfg.temperature_warn_c
        st = Status.WARN if temp >= limit else Status.PASS
        out.append(Finding("host.temperature", COMPONENT, st, "Hottest sensor", f"{temp:.0f} °C ({label})",
                           f"< {limit:.0f} °C", "the sensor's own crit limit (hwmon), else 90 °C",
                           "the host is overheating and will throttle: clear the vents, check the fans"
                           if st is Status.WARN else "", Fault.HOST_OVERHEAT if st is Status.WARN else None,
                           temp, limit, {"temperature_celsius": temp}))
    if cur.battery is not None:
        ratio, mains = cur.battery
        st = Status.FAIL if ratio < cfg.battery_fail_ratio and not mains else Status.WARN if not mains else Status.PASS
        out.append(Finding("host.power", COMPONENT, st, "Power", f"{'mains' if mains else 'battery'}, {_pct(ratio)}",
                           "on mains power", "broadcast practice: encode on mains power",
                           "plug the encoder laptop into mains power" if st is not Status.PASS else "",
                           Fault.ON_BATTERY if st is not Status.PASS else None, ratio, cfg.battery_fail_ratio,
                           {"battery_ratio": ratio}))

    for name in cfg.encoder_processes:
        key = name.lower()
        now = cur.processes.get(key)
        if now is None:
            out.append(Finding(f"host.process.{key}", COMPONENT, Status.FAIL, f"Encoder process {name}", "not running",
                               "running", "config studio.host.encoder_processes",
                               f"start {name} (the encoder is not running)", Fault.ENCODER_DOWN))
            continue
        before = prev.processes.get(key)
        # the interval on the kernel's own clock (CPU seconds of all cores / cores), the
        # clock the process's CPU seconds come from; the wall ``dt`` only when that is empty
        n_cores = len(cur.per_core) or 1
        span = dtotal / n_cores if dtotal > 0 else dt
        share = (now[1] - before[1]) / span if before is not None and span > 0 else 0.0
        out.append(Finding(f"host.process.{key}", COMPONENT, Status.PASS, f"Encoder process {name}",
                           f"running ({now[0]}), {share * 100:.0f} % of a core", "running",
                           "config studio.host.encoder_processes", "", None, share, None,
                           {f"process_{key}_cpu_cores": share}))
    return out


def samples(findings: list[Finding], cur: HostSnapshot, labels: dict[str, str], cfg: HostConfig) -> list[Sample]:
    out: list[Sample] = []
    for f in findings:
        if f.check == "host.cpu" and f.value is not None:
            out.append(Sample("signalpath_host_cpu_ratio", labels, f.value))
    out.append(Sample("signalpath_host_memory_available_bytes", labels, float(cur.memory_available)))
    if cur.disk_free is not None:
        out.append(Sample("signalpath_disk_free_bytes", labels, float(cur.disk_free)))
    for name in cfg.encoder_processes:  # component: the process name (obs, ffmpeg), a bounded set
        out.append(Sample("signalpath_encoder_process_up", {**labels, "component": name.lower()},
                          1.0 if name.lower() in cur.processes else 0.0))
    return out


# ------------------------------------------------------------------ probe


async def measure(cfg: HostConfig, state: dict[str, Any], clock: Callable[[], float]
                  ) -> tuple[list[Finding], HostSnapshot]:
    """Two snapshots (the previous attempt's or a fresh pair) → findings."""
    prev: HostSnapshot | None = state.get("host_snap")
    t_prev = state.get("host_t")
    if prev is None or t_prev is None:  # stored together: the first attempt takes a pair
        prev = await asyncio.to_thread(snapshot, cfg)
        t_prev = clock()
        await asyncio.sleep(cfg.cpu_sample_s)
    cur = await asyncio.to_thread(snapshot, cfg, proc_root=cfg.proc_root_later)
    t_cur = clock()
    state["host_snap"], state["host_t"] = cur, t_cur
    return assess(prev, cur, max(1e-6, t_cur - t_prev), cfg), cur


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Host checks; evidence for ``studio``/``host``."""
    cfg: HostConfig = target.config
    labels = {"stream": target.stream, "stage": STAGE, "component": COMPONENT}
    try:
        findings, cur = await measure(cfg, ctx.state, ctx.clock)
    except (OSError, psutil.Error) as exc:
        detail = f"cannot read host statistics: {exc.__class__.__name__}"
        return ProbeResult(Failure.UNAVAILABLE, detail,
                           evidence=[Evidence(STAGE, COMPONENT, State.UNKNOWN, None, detail)])
    ev = evidence_from(findings, COMPONENT)
    return ProbeResult(None, ev.detail, samples(findings, cur, labels, cfg), [ev],
                       figures={"findings": findings})


__all__ = ["HostConfig", "HostSnapshot", "NicStats", "assess", "measure", "probe", "snapshot"]
