"""A real RTSP source for tests: GStreamer's RTSP server (Debian gir1.2-gst-rtsp-server-1.0).

Two halves in one file:

- run as a script by the **system** interpreter (``/usr/bin/python3``, which has Debian's
  ``python3-gi``; the project venv cannot import it), it serves live test pictures on
  ``rtsp://127.0.0.1:PORT/<variant>``, one mount per variant (:data:`VARIANTS`), H.264
  (x264enc, 2-s GOP) + Opus audio (440 Hz sine at about -21 dBFS RMS), every client its own
  pipeline (not shared: each capture starts at a key frame). It prints ``READY <port>`` once
  listening, ``SENT <mount>`` once a client has been sent two seconds of video (PyAV's open has
  probed the streams by then: ~1.3 s here), and stops on
  SIGTERM/SIGINT or when its stdin closes (so it never outlives the test process);
- imported by the tests (venv Python), :func:`require_rtsp_server` skips — or fails under
  ``SIGNALPATH_REQUIRE_LAB=1``, the tests/_require.py rule — when that interpreter or the
  GStreamer RTSP pieces are missing, and :class:`RtspServer` starts/stops the script by PID.

Variants (the studio faults the video-source probe must see):
``ok`` moving ball 25 fps; ``black`` black picture; ``frozen`` 75 % colour bars without motion
(``smpte75``: the plain ``smpte`` pattern carries a patch of random noise, bottom right, which
is motion to the freeze detector — mean frame difference ~1.05 of 255, above its 1.0);
``slow`` 10 fps where 25 are expected; ``silent`` ball with silent audio. "Gone" is the
server not running, or :meth:`RtspServer.kill` mid-capture.
"""

from __future__ import annotations

import os
import subprocess
import sys

SYSTEM_PYTHON = "/usr/bin/python3"

_VIDEO = ("videotestsrc {pattern} is-live=true ! video/x-raw,width=320,height=180,framerate={fps}/1 "
          "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} ! rtph264pay name=pay0 pt=96")
_AUDIO = ("audiotestsrc is-live=true wave={wave} freq=440 volume=0.125 ! audioconvert ! audioresample "
          "! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay name=pay1 pt=97")

# a moving ball on mid grey (on the default black background the picture is "black": mean luma < 20)
_BALL = "pattern=ball background-color=0xff707070"
VARIANTS: dict[str, dict[str, object]] = {
    "ok": {"pattern": _BALL, "fps": 25, "wave": "sine"},
    "black": {"pattern": "pattern=black", "fps": 25, "wave": "sine"},
    "frozen": {"pattern": "pattern=smpte75", "fps": 25, "wave": "sine"},
    "slow": {"pattern": _BALL, "fps": 10, "wave": "sine"},
    "silent": {"pattern": _BALL, "fps": 25, "wave": "silence"},
}


def launch_line(variant: str) -> str:
    v = VARIANTS[variant]
    fps = int(v["fps"])  # type: ignore[call-overload]
    return "( " + _VIDEO.format(pattern=v["pattern"], fps=fps, gop=2 * fps) + " " + _AUDIO.format(wave=v["wave"]) + " )"


# ------------------------------------------------------------------ test-side helpers (venv Python)

_CHECK = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
          "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
          "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'opusenc', 'rtpopuspay') "
          "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))")
_checked: list[str] = []


def require_rtsp_server() -> str:
    """The system interpreter able to run this server, or skip/fail the test (tests/_require.py rule)."""
    import pytest

    if _checked:
        return _checked[0]
    why = ""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        why = f"{SYSTEM_PYTHON} is missing"
    else:
        try:
            r = subprocess.run([SYSTEM_PYTHON, "-c", _CHECK], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                why = "GStreamer RTSP server not importable: " + (r.stderr.strip().splitlines() or ["?"])[-1]
            elif r.stdout.strip():
                why = f"GStreamer elements missing: {r.stdout.strip()}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"{SYSTEM_PYTHON} failed: {exc}"
    if not why:
        _checked.append(SYSTEM_PYTHON)
        return SYSTEM_PYTHON
    message = (f"real RTSP source unavailable ({why}); install the Debian packages: apt-get install python3-gi "
               "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
               "gstreamer1.0-plugins-ugly")
    if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
        pytest.fail(message + " (SIGNALPATH_REQUIRE_LAB=1 makes this a failure)", pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover


class RtspServer:
    """The script as a child process: ``async with RtspServer() as srv: srv.url("ok")``."""

    def __init__(self, python: str | None = None, ready_timeout: float = 20.0) -> None:
        self.python = python or require_rtsp_server()
        self.ready_timeout = ready_timeout
        self.port = 0
        self.proc = None
        self.sent: set[str] = set()
        self._lines: list[str] = []

    def url(self, variant: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{variant}"

    async def __aenter__(self) -> RtspServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()

    async def start(self) -> None:
        import asyncio

        self.proc = await asyncio.create_subprocess_exec(
            self.python, os.path.abspath(__file__), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = await self._line(self.ready_timeout)
        except BaseException:
            await self.kill()
            raise
        if not line.startswith("READY "):
            err = (await self.proc.stderr.read())[-1500:].decode(errors="replace") if self.proc.stderr else ""
            await self.kill()
            raise RuntimeError(f"RTSP server did not start: {line!r} {err}")
        self.port = int(line.split()[1])

    async def _line(self, timeout: float) -> str:
        import asyncio

        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        line = raw.decode().strip()
        if line.startswith("SENT "):
            self.sent.add(line.split()[1])
        return line

    async def wait_sent(self, variant: str, timeout: float = 15.0) -> None:
        """Until a client of ``variant`` has been sent two seconds of video (deadline ``timeout``)."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while variant not in self.sent:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no client of /{variant} got two seconds of video within {timeout:g} s")
            if await self._line(left) == "":
                raise RuntimeError("RTSP server exited")

    async def kill(self) -> None:
        """SIGKILL the server (the 'gone' fault; also the cleanup) and reap it."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


# ------------------------------------------------------------------ the server (system Python)


def main() -> int:  # pragma: no cover - runs under /usr/bin/python3
    import signal

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    mounts = server.get_mount_points()

    def out(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def configured(_factory, media, variant: str) -> None:
        pay = media.get_element().get_by_name("pay0")
        fps = int(VARIANTS[variant]["fps"])  # type: ignore[call-overload]
        count = [0]

        def on_buffer(_pad, _info):
            count[0] += 1
            if count[0] == 2 * fps:  # one encoded frame per buffer into the payloader: two seconds
                out(f"SENT {variant}")
            return Gst.PadProbeReturn.OK

        pay.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_buffer)

    for variant in VARIANTS:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(variant))
        factory.set_shared(False)
        factory.connect("media-configure", configured, variant)
        mounts.add_factory(f"/{variant}", factory)
    if server.attach(None) == 0:
        out("ERROR attach failed")
        return 1
    out(f"READY {server.get_bound_port()}")

    def stop(*_args) -> bool:
        loop.quit()
        return False

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, stop)
    GLib.io_add_watch(GLib.IOChannel.unix_new(sys.stdin.fileno()), GLib.PRIORITY_DEFAULT,
                      GLib.IOCondition.HUP | GLib.IOCondition.IN | GLib.IOCondition.ERR,
                      lambda ch, cond: stop() if (cond & ~GLib.IOCondition.IN) or not os.read(ch.unix_get_fd(), 4096)
                      else True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
