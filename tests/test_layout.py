"""The folder shows the layers (STYLE.md 1 and 16), checked over the source with ``ast``:

- probes/ at the top holds exactly one module per key of ``probes.registry.REGISTRY``
  (``probes/<key>.py`` with ``async def probe``), beside ``__init__``, ``base`` (the probe
  contract), ``faults`` (the fault catalog) and ``registry``;
- no top-level probe module imports another one;
- probes/core/ (pure cores) imports only ``probes.base``, ``probes.faults`` and ``probes.core``;
- probes/net/ (clients, protocol codecs) imports only those and ``probes.net``;
- nothing under probes/ imports ``agent``.

Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

PROBES = Path(__file__).resolve().parent.parent / "probes"
NOT_PROBES = {"__init__", "base", "faults", "registry"}  # top-level modules that are not probes
SUBPACKAGES = {"core", "net"}
CORE_MAY_IMPORT = ("probes.base", "probes.faults", "probes.core")
NET_MAY_IMPORT = CORE_MAY_IMPORT + ("probes.net",)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROBES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``; ``from pkg import name`` yields
    ``pkg.name`` too (it may be a submodule), relative imports are resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
    return out


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(paths: list[Path], bad) -> list[str]:
    """``file:line: module`` once per offending import statement."""
    out: dict[tuple[Path, int], str] = {}
    for p in paths:
        for line, mod in _imports(p):
            if bad(p, mod):
                out.setdefault((p, line), f"{p.relative_to(PROBES.parent)}:{line}: {mod}")
    return list(out.values())


def _files(where: Path) -> list[Path]:
    return sorted(where.rglob("*.py"))


def _probe_modules() -> set[str]:
    return {p.stem for p in PROBES.glob("*.py") if p.stem not in NOT_PROBES}


def test_top_level_probe_modules_are_the_registry():
    from probes.registry import REGISTRY

    assert _probe_modules() == set(REGISTRY), (
        "probes/ at the top holds one module per registry key; move helpers to probes/core/ "
        "(pure) or probes/net/ (network), or register the probe")
    for key, spec in REGISTRY.items():
        assert spec.run.__module__ == f"probes.{key}" and spec.run.__name__ == "probe", key
        assert inspect.iscoroutinefunction(spec.run), f"probes/{key}.py: probe must be async def"
        if spec.combine is not None:
            assert spec.combine.__module__ == f"probes.{key}", key


def test_only_core_and_net_below_probes():
    found = {p.parent.name for p in PROBES.glob("*/__init__.py")}
    stray = {p.parent.name for p in PROBES.glob("*/*.py")} - found
    assert found == SUBPACKAGES and not stray, f"probes/ subpackages: {sorted(found | stray)}"


def test_nothing_in_probes_imports_agent():
    bad = _violations(_files(PROBES), lambda p, mod: _within(mod, ("agent",)))
    assert not bad, "probes/ must not reach up into agent/:\n" + "\n".join(bad)


def test_no_probe_imports_another_probe():
    probes = tuple(f"probes.{m}" for m in _probe_modules())
    bad = _violations([PROBES / f"{m}.py" for m in sorted(_probe_modules())],
                      lambda p, mod: _within(mod, probes) and not _within(mod, (f"probes.{p.stem}",)))
    assert not bad, "a probe imports another probe; move what they share to probes/core/ or probes/net/:\n" \
        + "\n".join(bad)


@pytest.mark.parametrize("sub,allowed", [("core", CORE_MAY_IMPORT), ("net", NET_MAY_IMPORT)])
def test_layers_import_only_downwards(sub, allowed):
    bad = _violations(_files(PROBES / sub),
                      lambda p, mod: _within(mod, ("probes",)) and mod != "probes" and not _within(mod, allowed))
    assert not bad, f"probes/{sub}/ may import only {', '.join(allowed)}:\n" + "\n".join(bad)


def test_the_checker_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The rules above are only as good as :func:`_imports`: lazy, relative and
    ``from probes import x`` imports are all seen."""
    pkg = tmp_path / "probes" / "core"
    pkg.mkdir(parents=True)
    (tmp_path / "probes" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    f = pkg / "x.py"
    f.write_text("from probes import hls\nfrom ..net import amf0\nfrom . import beacon\n"
                 "def g():\n    import agent.config\n")
    monkeypatch.setattr(f"{__name__}.PROBES", tmp_path / "probes")
    mods = {m for _, m in _imports(f)}
    assert {"probes.hls", "probes.net.amf0", "probes.core.beacon", "agent.config"} <= mods


def test_bounded_waits_use_asyncio_timeout_not_wait_for():
    """STYLE "every wait has a timeout", written one way: ``async with asyncio.timeout()``. On
    Python 3.11, ``asyncio.wait_for`` can swallow the task's own cancellation when the awaited
    thing completes at the same moment (bpo-42130); a loop around it then never stops (the lab's
    packet pump hung a test in ``Lab.stop()``)."""
    offenders = []
    for root in (PROBES, PROBES.parent / "agent"):
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for" \
                        and isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                    offenders.append(f"{path.relative_to(PROBES.parent)}:{node.lineno}")
    assert offenders == []
