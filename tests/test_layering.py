"""The package layering (docs/design.md): each package imports only the layers below it, and no
module imports itself back through others. Imports inside functions count as much as those at
the top: a function-local import hides a dependency, it does not remove it."""
from __future__ import annotations

import ast
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Package -> the dermjax packages it may import (itself included). Top-level modules
# (dermjax/__init__.py, cpu_env.py) import nothing of dermjax.
ALLOWED = {
    "core": {"core"},
    "notes": {"core", "notes"},
    "models": {"core", "models"},
    "data": {"core", "notes", "data"},
    "eval": {"core", "notes", "data", "models", "eval"},
    "train": {"core", "notes", "data", "models", "eval", "train"},
    "aot": {"core", "notes", "data", "models", "eval", "train", "aot"},
    "configs": {"core", "notes", "data", "models", "eval", "train", "configs"},
    "cli": {"core", "notes", "data", "models", "eval", "train", "aot", "configs", "cli"},
}


def _modules(root: str) -> dict[str, str]:
    """{dotted module name: file} for dermjax/ and configs/ (installed as dermjax.configs)."""
    found = {}
    for top, name in (("dermjax", "dermjax"), ("configs", "dermjax.configs")):
        base = os.path.join(root, top)
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), base)[:-3].replace(os.sep, ".")
                    mod = name if rel == "__init__" else f"{name}.{rel.removesuffix('.__init__')}"
                    found[mod] = os.path.join(dirpath, f)
    return found


def _imports(mod: str, path: str, modules: dict) -> list[tuple[str, int]]:
    """(imported dermjax module, line) for every import in the file, wherever it sits; a name
    imported from a package counts as its submodule when it is one."""
    package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out += [(t, node.lineno) for t in targets if t == "dermjax" or t.startswith("dermjax.")]
    return out


def _layer(mod: str) -> str | None:
    parts = mod.split(".")
    if len(parts) < 2 or f"dermjax.{parts[1]}" not in ("dermjax." + p for p in ALLOWED):
        return None  # a top-level module
    return parts[1]


def check(root: str) -> list[str]:
    """Every upward import and every import cycle under `root`, one line each."""
    modules = _modules(root)
    graph, problems = {}, []
    for mod, path in sorted(modules.items()):
        graph[mod] = set()
        for target, line in _imports(mod, path, modules):
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target == mod:
                continue
            graph[mod].add(target)
            src, dst = _layer(mod), _layer(target)
            rel = os.path.relpath(path, root)
            if src is None and target != "dermjax":
                problems.append(f"{rel}:{line}: top-level module {mod} imports {target}")
            elif src is not None and dst is not None and dst not in ALLOWED[src]:
                problems.append(f"{rel}:{line}: {src} imports {target} (layer {dst} is above it)")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), as a path that closes."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_close(g, graph) for g in groups]


def _close(group: list[str], graph: dict) -> list[str]:
    path, seen = [group[0]], {group[0]}
    while True:
        nxt = sorted(w for w in graph[path[-1]] if w in group)
        back = [w for w in nxt if w in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        path.append(nxt[0])
        seen.add(nxt[0])


def test_packages_import_only_downward_and_without_cycles():
    assert check(ROOT) == []


def _copy(tmp_path) -> str:
    root = str(tmp_path / "tree")
    for top in ("dermjax", "configs"):
        shutil.copytree(os.path.join(ROOT, top), os.path.join(root, top),
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.h"))
    return root


@pytest.mark.parametrize("where, line, expect", [
    # An upward import inside a function: models may not reach the trainers.
    ("dermjax/models/vit.py", "\n\ndef _x():\n    from dermjax.train import loop\n",
     "models imports dermjax.train.loop (layer train is above it)"),
    # A sideways one at the top: data and models are peers.
    ("dermjax/data/augment.py", "\nfrom dermjax.models import two_towers\n",
     "data imports dermjax.models.two_towers (layer models is above it)"),
    # A cycle inside one package.
    ("dermjax/core/errors.py", "\nfrom dermjax.core import io\n", "import cycle: dermjax.core.errors -> dermjax.core.io -> dermjax.core.errors"),
])
def test_the_check_fails_on_an_upward_import_or_a_cycle(tmp_path, where, line, expect):
    root = _copy(tmp_path)
    assert check(root) == []
    with open(os.path.join(root, where), "a") as f:
        f.write(line)
    problems = check(root)
    assert problems and any(expect in p for p in problems), problems


def _local_imports(root: str):
    """(file, line, source line) of each import inside a function, without a reason beside it:
    a comment on its line or in the three lines above, or a try: that handles its absence."""
    for mod, path in sorted(_modules(root).items()):
        lines = open(path).read().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines), path)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    near = lines[max(0, node.lineno - 4):node.lineno]
                    if not any("#" in x or x.strip() == "try:" for x in near):
                        yield os.path.relpath(path, root), node.lineno, lines[node.lineno - 1].strip()


def test_imports_inside_functions_say_why():
    """A function-local import is for a heavy or optional dependency (or to keep JAX from
    starting), and says so; anything else belongs at the top of the module."""
    assert list(_local_imports(ROOT)) == []
