"""The package's layers import one way down: text -> tokens -> models -> scoring -> compression ->
index -> text layer -> integrations / api / cli.

Every import statement of every module (function-level imports included) is read with ``ast``;
a module may import its own package or a package of a lower rank, nothing else. A new top-level
package or module must be given a rank here, which is the point: its place in the data flow is
decided once, on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maxsim"

#: rank of each top-level part of ``maxsim``; imports go to strictly lower ranks only.
RANKS = {
    "errors": 0,
    "types": 0,
    "parallel": 0,
    "text": 1,
    "documents": 1,
    "tokens": 2,
    "scoring": 2,
    "compression": 2,
    "store": 3,
    "postprocess": 3,
    "models": 4,
    "index": 4,
    "collection": 5,
    "integrations": 5,
    "demo": 6,
    "evaluation": 6,
    "build": 6,  # text -> streaming index build (collection + index)
    "distributed": 7,  # the same build on Ray (uses build)
    "train": 7,
    "api": 8,
    "cli": 9,
    "": 10,  # maxsim/__init__.py
}

#: the issue's rule, stated directly: storage, compression, scoring and token layers never
#: reach up to the model, the service or the command line.
NEVER = {
    part: {"models", "api", "cli", "collection"}
    for part in ("index", "store", "compression", "scoring", "tokens", "text", "postprocess", "integrations")
}


def _part(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else ""


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("maxsim"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("maxsim"):
            found.add(node.module)
            # `from maxsim import index` names a package too
            found.update(f"{node.module}.{a.name}" for a in node.names if node.module == "maxsim")
    return found


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_go_one_way_down(module, path):
    part = _part(module)
    assert part in RANKS, f"{module}: give maxsim.{part} a rank in tests/test_layering.py"
    bad = []
    for target in _imports(path):
        other = _part(target)
        if other == part or other not in RANKS and target == "maxsim":
            continue
        if other not in RANKS:
            bad.append(f"{target} (unranked)")
        elif RANKS[other] >= RANKS[part] or other in NEVER.get(part, ()):
            bad.append(f"{target} (rank {RANKS[other]} from rank {RANKS[part]})")
    assert not bad, f"{module} imports upward: {sorted(bad)}"


def test_the_checker_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from maxsim.models.loading import load\n    return load\n")
    assert _imports(probe) == {"maxsim.models.loading"}
