"""One strict-config base (STYLE.md 8 and 18): every pydantic config model in agent/ and
probes/ derives from :class:`probes.core.config.StrictModel` instead of repeating
``model_config = ConfigDict(extra="forbid", frozen=True)``; checked over the source with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes.core.config import StrictModel

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "probes" / "core" / "config.py"
# Files whose owners are moving them to StrictModel; remove an entry when its file is done.
PENDING = {"agent/incidents.py", "agent/lab/config.py"}


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for b in node.bases:
                name = b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                if name == "BaseModel":
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno}: class {node.name}(BaseModel)")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "ConfigDict":
            out.append(f"{path.relative_to(ROOT)}:{node.lineno}: ConfigDict(...)")
    return out


def test_every_config_model_derives_from_strict_model():
    files = [p for d in ("agent", "probes") for p in sorted((ROOT / d).rglob("*.py"))
             if p != BASE and str(p.relative_to(ROOT)) not in PENDING]
    bad = [o for p in files for o in _offences(p)]
    assert not bad, "derive from probes.core.config.StrictModel (extend model_config there if needed):\n" \
        + "\n".join(bad)


def test_strict_model_forbids_unknown_keys_and_is_frozen():
    class M(StrictModel):
        a: int = 1

    with pytest.raises(ValidationError, match="extra_forbidden"):
        M(b=2)
    m = M()
    with pytest.raises(ValidationError, match="frozen_instance"):
        m.a = 3
