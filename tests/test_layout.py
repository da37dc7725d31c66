"""The package's folders follow the pipeline (sources -> core -> sinks, cli wiring them).

Two rules are checked by reading every module's imports (module level and inside
functions alike, since a lazy import is a dependency all the same):

- the sans-I/O core imports nothing from ``sources``, ``sinks`` or ``cli``;
- no import cycle exists between the package's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mirrorwatch"
OUTSIDE_CORE = ("mirrorwatch.sources", "mirrorwatch.sinks", "mirrorwatch.cli")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (``from pkg import mod`` counts as mod)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mirrorwatch"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".") if is_pkg else name.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            if not base.startswith("mirrorwatch"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(name, path, known) for name, path in mods.items()}


def test_the_layout_has_the_pipeline_folders():
    for folder in ("sources", "core", "core/decode", "core/flows", "core/reassembly", "core/applayer",
                   "core/detect", "rules", "sinks", "cli"):
        assert (PACKAGE / folder / "__init__.py").exists(), folder


def test_the_core_imports_no_source_sink_or_cli():
    bad = [f"{m} imports {dep}" for m, deps in graph().items() if m.startswith("mirrorwatch.core")
           for dep in sorted(deps) if dep.startswith(OUTSIDE_CORE)]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(g[m]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("source, expect", [
    ("from mirrorwatch.sinks.eve import EveWriter\n", "mirrorwatch.sinks.eve"),
    ("from ...sinks import eve\n", "mirrorwatch.sinks.eve"),
    ("def f():\n    from mirrorwatch.cli import main\n", "mirrorwatch.cli"),
])
def test_the_checker_sees_a_violation(tmp_path, source, expect):
    """The walker itself: a core module importing a sink, however spelt, is found."""
    path = tmp_path / "x.py"
    path.write_text(source)
    known = {"mirrorwatch.sinks.eve", "mirrorwatch.sinks", "mirrorwatch.cli", "mirrorwatch.core.detect.x"}
    assert expect in imported("mirrorwatch.core.detect.x", path, known)
