"""The ``signalpath`` command line.

Every command's ``--help`` ends with an example. A user's mistake (a bad config, a
missing file, a taken port) is one clear line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, TypeVar

from agent.errors import ConfigError, SignalpathError

if TYPE_CHECKING:
    from agent.config import Config

EXIT_OK, EXIT_USAGE = 0, 2

log = logging.getLogger("signalpath.cli")

CONFIG_EXAMPLE = """\
example config (YAML; ${VAR} reads the environment):
  agent: {listen: "127.0.0.1:9321", site: studio-a}
  exporters: {otlp: {endpoint: "http://127.0.0.1:4318"}}
  streams:
    - name: main
      origin: "http://127.0.0.1:8080/live/main.m3u8"
      edges:
        - {name: edge-a, url: "http://127.0.0.1:8081/live/main.m3u8"}
        - {name: edge-b, url: "http://127.0.0.1:8082/live/main.m3u8?token=${CDN_TOKEN}"}
"""


class _Fmt(argparse.RawDescriptionHelpFormatter):
    pass


def _add(sub: argparse._SubParsersAction, name: str, help: str, example: str, description: str = ""
         ) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=(description or help),
                          epilog=f"example:\n  {example}", formatter_class=_Fmt)


def _version() -> str:
    """The installed distribution's version (pyproject.toml), e.g. ``signalpath 0.1.0``."""
    from agent import installed_version

    v = installed_version()
    # None: run from a checkout that was never installed
    return f"signalpath {v}" if v else "signalpath (not installed: version unknown; make venv installs it)"


NO_STREAMS = ("no stream to watch: add one under streams: with a name and its origin playlist URL "
              "(examples/minimal.yaml is a complete one)")


def load_agent_config(path: str) -> Config:
    """The config ``check-config`` and ``run`` accept: valid, and watching at least one stream.

    A config without streams is valid to the model (the lab and tests build agents from parts)
    but as a file given to the agent it is a mistake: it would start an agent that watches nothing.
    """
    from agent.config import load_config

    cfg = load_config(path)
    if not cfg.streams:
        raise ConfigError(str(path), [("streams", NO_STREAMS)])
    return cfg


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- check-config

def cmd_check_config(args: argparse.Namespace) -> int:
    if (args.file is None) == (args.config_file is None):
        print("check-config: give the config file once: 'check-config FILE' or 'check-config -c FILE'",
              file=sys.stderr)
        return EXIT_USAGE
    args.file = args.file or args.config_file
    try:
        cfg = _with_shard(load_agent_config(args.file), args.shard)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    edges = sum(len(s.edges) for s in cfg.streams)
    print(f"{args.file}: ok — {len(cfg.streams)} stream(s), {edges} edge(s), listen {cfg.agent.listen}, "
          f"site {cfg.agent.site}")
    if cfg.agent.shard:
        from agent.shard import sharded

        mine = [s.name for s in sharded(cfg).streams]
        print(f"shard {cfg.agent.shard} watches {len(mine)} of {len(cfg.streams)} stream(s): "
              f"{', '.join(mine) or 'none (more shards than this config needs)'}")
    return EXIT_OK


# ---------------------------------------------------------------- run

_A = TypeVar("_A")

async def run_until_signal(agent_factory: Callable[[], AbstractAsyncContextManager[_A]],
                           on_ready: Callable[[_A], None] | None = None,
                           on_reload: Callable[[_A], Awaitable[None]] | None = None) -> None:
    """Start an agent (an async context manager) and run it until SIGINT/SIGTERM; with
    ``on_reload``, SIGHUP calls it (one reload at a time; signals during one make one more)."""
    loop = asyncio.get_running_loop()
    stop, hup = asyncio.Event(), asyncio.Event()
    signals = [signal.SIGINT, signal.SIGTERM]
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        signals.append(signal.SIGHUP)
        loop.add_signal_handler(signal.SIGHUP, hup.set)

    async def reloader(agent: _A) -> None:
        assert on_reload is not None
        while True:
            await hup.wait()
            hup.clear()
            try:
                await on_reload(agent)
            except Exception:  # a bug in a reload must not stop the agent that runs
                log.exception("config reload failed; still running the previous config")

    try:
        async with agent_factory() as agent:
            if on_ready:
                on_ready(agent)
            task = asyncio.create_task(reloader(agent), name="reload") if on_reload is not None else None
            try:
                await stop.wait()
            finally:
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import Agent

    try:
        cfg = _with_listen(_with_shard(load_agent_config(args.config), args.shard), args.listen)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    from agent import logsafe

    logsafe.install(logsafe.config_secrets(cfg))  # before the first line: no logger prints a secret
    _setup_logging(args.log_level or cfg.agent.log_level)

    def ready(agent: Agent) -> None:
        url = agent.url
        shard = f" (shard {cfg.agent.shard} of the config's {len(cfg.streams)})" if cfg.agent.shard else ""
        print(f"signalpath: watching {len(agent.config.streams)} stream(s){shard}; status {url}/  "
              f"metrics {url}/metrics", file=sys.stderr, flush=True)

    async def reload(agent: Agent) -> None:
        try:
            new = _with_listen(_with_shard(await asyncio.to_thread(load_agent_config, args.config), args.shard),
                               args.listen)
        except ConfigError as exc:  # one line, every problem with its key path
            log.error("config reload refused, still running the previous config: %s", "; ".join(str(exc).splitlines()))
            return
        await agent.reload(new)

    try:
        _run_loop(run_until_signal(lambda: Agent(cfg), ready, reload))
    except SignalpathError as exc:
        print(f"signalpath: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("signalpath: stopped", file=sys.stderr)
    return EXIT_OK


def _with_shard(cfg: Config, shard: str | None) -> Config:
    """``--shard I/N`` in place of ``agent.shard`` (agent/shard.py)."""
    if shard is None:
        return cfg
    from agent.shard import parse_shard

    try:
        i, n = parse_shard(shard)
    except ValueError as exc:
        raise ConfigError("--shard", [("", str(exc))]) from None
    return cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"shard": f"{i}/{n}"})})


def _with_listen(cfg: Config, listen: str | None) -> Config:
    """``--listen HOST:PORT`` in place of ``agent.listen`` (several agents of one config on one host)."""
    if listen is None:
        return cfg
    from agent.config import parse_listen

    try:
        parse_listen(listen)
    except ValueError as exc:
        raise ConfigError("--listen", [("", str(exc))]) from None
    return cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"listen": listen})})


def _run_loop(coro) -> None:
    """uvloop when installed (cheaper polls on the hot path), else asyncio's loop; the garbage
    collector tuned for the agent's process while it runs (agent/gctune.py)."""
    from agent.gctune import tuned_gc

    with tuned_gc():
        try:
            import uvloop
        except ImportError:
            asyncio.run(coro)
        else:
            uvloop.run(coro)


# ---------------------------------------------------------------- hash-password

def cmd_hash_password(args: argparse.Namespace) -> int:
    """A bcrypt hash for agent.web.basic_auth: the password from stdin (asked twice, unechoed, on a terminal)."""
    import getpass

    from agent.webguard import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("hash-password: the two passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    try:
        print(hash_password(password.encode(), args.cost))
    except ValueError as exc:
        print(f"hash-password: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="signalpath",
        description="signalpath watches a live stream's signal path — studio → ingest → transcode → origin → "
                    "CDN edges → playback — and says in seconds which stage broke.",
        epilog="example:\n  signalpath run -c signalpath.yaml\n\n" + CONFIG_EXAMPLE,
        formatter_class=_Fmt)
    p.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = _add(sub, "check-config", "validate a config file and print every problem with its path",
             "signalpath check-config signalpath.yaml",
             "Validate a config file. Exit 0 when valid; otherwise print every problem as FILE: PATH: MESSAGE "
             "and exit 2.\n\n" + CONFIG_EXAMPLE)
    c.add_argument("file", nargs="?", help="the YAML config file")
    c.add_argument("-c", "--config", dest="config_file", metavar="FILE",
                   help="the same, spelled as 'run' and 'incidents' take it")
    c.add_argument("--shard", metavar="I/N", help="also list the streams agent I of N would watch (as 'run --shard')")
    c.set_defaults(func=cmd_check_config)

    r = _add(sub, "run", "run the agent until Ctrl-C / SIGTERM; SIGHUP re-reads the config",
             "signalpath run -c signalpath.yaml   # then open http://127.0.0.1:9321/; kill -HUP PID after an edit",
             "Run the agent: probe every configured stream, serve the status page (/), /metrics and "
             "/api/v1/status on agent.listen, export traces when exporters.otlp is set. Stops cleanly on "
             "SIGINT/SIGTERM.\n\n"
             "SIGHUP re-reads the config file. An invalid file is one error line with its key path and the "
             "agent goes on with the config it runs. A valid one applies its streams: streams that remain "
             "keep their open incidents and history, new ones start probing, and an open incident of a "
             "removed stream or component is resolved as 'removed from config'. Any other change (listen address, "
             "incident store, alerts, exporters, localize, ...) is logged with its key as 'needs a restart' and "
             "left as it runs.\n\n"
             + CONFIG_EXAMPLE)
    r.add_argument("-c", "--config", required=True, help="the YAML config file")
    r.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides agent.log_level")
    r.add_argument("--shard", metavar="I/N", help="watch shard I of N of the config's streams (overrides "
                   "agent.shard): run N agents with one config, each stream on exactly one of them; each "
                   "keeps its incidents in its own file beside incidents.path (NAME.shard-I-of-N.db)")
    r.add_argument("--listen", metavar="HOST:PORT", help="overrides agent.listen (several shards on one host)")
    r.set_defaults(func=cmd_run)

    h = _add(sub, "hash-password", "print a bcrypt hash of a password for agent.web.basic_auth",
             "signalpath hash-password   # type it twice; or: printf %s \"$PW\" | signalpath hash-password",
             "Read a password from stdin (asked twice and not echoed on a terminal) and print its bcrypt hash "
             "for agent.web.basic_auth.read or .write. The password is never printed.")
    h.add_argument("--cost", type=int, default=12, choices=range(10, 17), metavar="10-16",
                   help="bcrypt cost (default 12: 0.2-1 s per check; the agent caches each login)")
    h.set_defaults(func=cmd_hash_password)

    for register in _plugins():
        register(sub)
    return p


def _plugins() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Commands that live beside their feature (lab, demo, beacon, ...)."""
    out = []
    import importlib

    for mod in ("agent.lab.cli", "agent.demo", "agent.beacon_publish", "agent.incidents_cli", "agent.complaints_cli",
                "agent.preflight", "agent.report_cli", "agent.drill"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and mod.startswith(exc.name):
                continue  # that feature is not installed in this build
            raise
        reg = getattr(m, "register", None)
        if reg is not None:
            out.append(reg)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("signalpath: interrupted", file=sys.stderr)
            return 130
        except SignalpathError as exc:
            print(f"signalpath: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        # The reader went away (`signalpath incidents --json | head`): that is how pipes end,
        # not an error to report. Point stdout at /dev/null so the interpreter's own final
        # flush does not raise again (Python docs, "Note on SIGPIPE"); 128 + SIGPIPE, as a
        # shell reports a command that a closed pipe stopped.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
