"""The wall between the layers, checked: import-linter's contracts, no import cycles, a UI-free engine,
and package docstrings that say what each package is and whether it may import the ML stack."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "tui", "tunebench")


def _env() -> dict:
    # this checkout's packages first, so a worktree is checked and not the editable install it shares a venv with
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_import_linter_contracts_are_kept():
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    out = subprocess.run([*cmd, "--no-cache", "--no-logo"], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"lint-imports failed:\n{out.stdout}\n{out.stderr}"
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken", out.stdout), out.stdout  # it checked contracts


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit): the components with more than one module, or one
    that imports itself, each sorted; these are exactly the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1 or node in graph.get(node, ()):
                        found.append(sorted(comp))
    return sorted(found)


def import_graph(*packages: str) -> dict[str, set[str]]:
    """module -> the project modules it imports, at module level or inside a function (grimp reads every
    import statement); no cache, so the repository gets no cache directory."""
    g = grimp.build_graph(*packages, cache_dir=None)
    return {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"f"}, "g": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["d", "e"], ["f"]]
    chain = {str(i): {str(i + 1)} for i in range(5000)}  # deeper than Python's recursion limit
    chain["5000"] = {"0"}
    assert strongly_connected(chain) == [sorted(str(i) for i in range(5001))]


def test_a_cycle_through_a_function_level_import_is_caught(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyclepkg import a  # hidden in a function\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert strongly_connected(import_graph("cyclepkg")) == [["cyclepkg.a", "cyclepkg.b"]]


def test_no_import_cycles_in_engine_tui_and_tunebench():
    graph = import_graph(*PACKAGES)
    assert "engine.rundir.runs" in graph and "tui.app" in graph  # the graph is of the real packages
    assert graph["engine.rundir.runs"] and all(m.split(".")[0] in PACKAGES for deps in graph.values() for m in deps)
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles (each list imports itself round): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_engine_module_imports_without_a_ui_library():
    code = """
import importlib, json, pkgutil, sys
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.") if m.name.rsplit(".", 1)[-1] != "__main__"]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "engine.training.worker" in result["imported"] and "engine.rundir.runs" in result["imported"]
    ui = sorted(m for m in result["modules"] if m.split(".")[0] in ("textual", "rich"))
    assert not ui, f"importing the engine loaded a UI library: {ui[:10]}"


def packages(*tops: str) -> list[Path]:
    return sorted(p.parent for top in tops for p in (ROOT / top).rglob("__init__.py"))


def test_every_package_has_a_docstring_and_every_engine_package_says_light_or_heavy():
    found = packages(*PACKAGES)
    assert ROOT / "engine" / "rundir" in found and ROOT / "tui" / "panes" in found
    missing, unsaid = [], []
    for pkg in found:
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text(encoding="utf-8")))
        name = ".".join(pkg.relative_to(ROOT).parts)
        if not doc:
            missing.append(name)
        elif name.startswith("engine.") and not re.search(r"\b(light|heavy)\b", doc, re.IGNORECASE):
            unsaid.append(name)
    assert not missing, f"packages without an __init__ docstring: {missing}"
    assert not unsaid, f"engine packages whose docstring does not say light or heavy: {unsaid}"

