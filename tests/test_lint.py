"""The code is clean under the project's ruff configuration (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None,
                    reason="ruff missing: `make test` installs the test extra")
def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    done = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:]


def test_no_import_cycles_and_no_forbidden_edges():
    """intents and handoff never import voice, intents never imports handoff, nothing outside
    tests imports tests, and no module imports itself round a cycle (function-level and
    TYPE_CHECKING imports included)."""
    import ast

    packages = ("voice", "intents", "handoff", "models", "bench")
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in packages:
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported |= {f"{node.module}.{a.name}" for a in node.names}
        graph[module] = {m for m in imported if m.split(".")[0] in packages + ("tests",)}
    known = set(graph)
    edges = {m: {t for t in targets if t in known} for m, targets in graph.items()}
    forbidden = [(m, t) for m, targets in graph.items() for t in targets
                 if (m.startswith(("intents", "handoff")) and t.startswith("voice"))
                 or (m.startswith("intents") and t.startswith("handoff"))
                 or t.startswith("tests")]
    assert forbidden == []

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    return path
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for m in edges if (c := cycle_from(m)) is not None]
    assert cycles == []
