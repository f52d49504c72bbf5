"""The package's folders are layers: every import points down the layer order, and no two modules import each other.

Every module of ``insid3lab`` is parsed with :mod:`ast` (imports at any depth: module level,
inside functions, ``from . import x``), each import is resolved to the module it names, and
checked against the rule in ``docs/architecture.md``:

- a module imports from its own layer and from layers before it;
- ``core`` and ``authors`` import nothing else of insid3lab;
- ``eval`` imports the public API (``from insid3lab import X``), ``core`` and its own modules;
- ``bench``, ``cli`` and ``__main__`` are leaves and may use anything before them.

An import under ``if TYPE_CHECKING:`` counts for the layer order but not as a cycle (it never runs).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "insid3lab"
NAME = "insid3lab"
API = "(public API)"
MAX_LINES = 500

# Rank of each layer; a module may import from layers of lower rank (and from its own layer).
RANK = {
    "core": 0,
    "backbone": 1,
    "stages": 2,
    "method": 3,
    "model": 4,
    "tasks": 5,
    "viz": 6,
    "lab": 7,
    "synthetic": 8,
    "authors": 8,
    API: 9,
    "eval": 10,
    "bench": 11,
    "cli": 12,
    "__main__": 13,
}
# Layers that may import only these layers (besides their own).
ONLY = {"core": set(), "authors": set(), "eval": {"core", API}}
ROOT_FILES = {"__init__.py", "__main__.py"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "insid3lab.model.insid3"
    line: int
    target: str  # the module imported, e.g. "insid3lab.tasks.tracking"
    text: str  # the import as written
    typing_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path, package: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """``insid3lab.stages.clustering.tree`` -> ``stages``; the package itself is the public API."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else API


def _resolve(name: str, modules: set[str]) -> str:
    """The longest prefix of a dotted name that is a module (``insid3lab.core.digest.digest`` -> ``insid3lab.core.digest``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _typing_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports_of(module: str, source: str, modules: set[str], is_package: bool) -> list[Import]:
    """Every import of insid3lab in ``source`` (the text of ``module``), resolved to the modules it names."""
    tree = ast.parse(source)
    typing = _typing_lines(tree)
    package = module if is_package else module.rsplit(".", 1)[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import name``: ``pkg.name`` when it is a module, else ``pkg`` itself
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(_resolve(full, modules) for full in names):
            if target == NAME or target.startswith(NAME + "."):
                found.append(Import(module, node.lineno, target, ast.unparse(node), node.lineno in typing))
    if module == NAME:  # the public API names its exports as strings and imports them on first use
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for value in node.values:
                    if isinstance(value, ast.Constant) and str(value.value).startswith(NAME + "."):
                        target = _resolve(value.value, modules)
                        found.append(Import(module, value.lineno, target, f"export from {value.value}", False))
    return found


def read_package(package: Path) -> dict[str, tuple[Path, str]]:
    """``{module name: (file, source)}`` for every ``.py`` file under ``package``."""
    return {module_name(p, package): (p, p.read_text()) for p in sorted(package.rglob("*.py"))}


def all_imports(sources: dict[str, tuple[Path, str]]) -> list[Import]:
    modules = set(sources)
    return [
        imp
        for name, (path, text) in sources.items()
        for imp in imports_of(name, text, modules, path.name == "__init__.py")
    ]


def allowed(source: str, target: str) -> bool:
    here, there = layer(source), layer(target)
    if here == there:
        return True
    if here in ONLY:
        return there in ONLY[here]
    return RANK[there] < RANK[here]


def violations(imports: list[Import], sources: dict[str, tuple[Path, str]]) -> list[str]:
    out = []
    for imp in sorted(imports, key=lambda i: (str(sources[i.source][0]), i.line)):
        if not allowed(imp.source, imp.target):
            path = sources[imp.source][0].relative_to(ROOT)
            out.append(f"{path}:{imp.line}: {layer(imp.source)} imports {layer(imp.target)} ({imp.target}): {imp.text}")
    return out


def import_graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """Module -> the insid3lab modules importing it runs (imports at any depth, not those only for type checkers).

    ``import a.b.c`` also runs the packages ``a`` and ``a.b``, except those the importer is itself
    inside (a package importing its own children and a child its parent are how packages work).
    """
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.typing_only:
            continue
        parts = imp.target.split(".")
        for i in range(1, len(parts) + 1):
            target = ".".join(parts[:i])
            if target in modules and target != imp.source and not (imp.source + ".").startswith(target + "."):
                graph[imp.source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, each as a closed path ``[a, b, ..., a]`` (the shortest through its first module)."""
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        path = _shortest_cycle(graph, start)
        if path and frozenset(path) not in found:
            found[frozenset(path)] = path
    return list(found.values())


def _shortest_cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return None


def describe(cycle: list[str], imports: list[Import]) -> str:
    """``a (line 3) -> b (line 12) -> a``: where each module of the cycle imports the next."""
    lines: dict[tuple[str, str], int] = {}
    for i in imports:
        parts = i.target.split(".")
        for k in range(1, len(parts) + 1):
            lines.setdefault((i.source, ".".join(parts[:k])), i.line)
    return " -> ".join(f"{a} (line {lines[a, b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


@pytest.fixture(scope="module")
def package():
    sources = read_package(PACKAGE)
    imports = all_imports(sources)
    return sources, imports, import_graph(imports, set(sources))


def test_every_import_points_down_the_layers(package):
    sources, imports, _ = package
    found = violations(imports, sources)
    assert not found, "imports against the layer order (see docs/architecture.md):\n" + "\n".join(found)


def test_no_modules_import_each_other_in_a_cycle(package):
    _, imports, graph = package
    assert "insid3lab.cli.options" in graph["insid3lab.cli.segment"]
    assert "insid3lab.cli.segment" in graph["insid3lab.cli"]
    found = [describe(c, imports) for c in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_command_modules_do_not_import_each_other(package):
    _, _, graph = package
    commands = {"insid3lab.cli." + c for c in ("segment", "match", "eval", "bench", "samples", "cache")}
    for c in commands:
        assert not graph[c] & commands, c


#: Modules that must import first in a fresh interpreter (the others are imported by these).
FIRST_IMPORTS = [
    "insid3lab.cli",
    "insid3lab.cli.options",
    "insid3lab.cli.eval",
    "insid3lab.bench.coldstart",
    "insid3lab.synthetic",
]


def test_every_module_imports_in_a_fresh_interpreter():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {
        m: subprocess.Popen([sys.executable, "-c", f"import {m}"], stderr=subprocess.PIPE, text=True, env=env)
        for m in FIRST_IMPORTS
    }  # one interpreter per module, so that none relies on another imported before it
    for m, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{m}: {err.strip().splitlines()[-1:]}"


def test_every_layer_folder_is_known_and_the_root_holds_the_public_api_alone():
    files = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix == ".py"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert files == ROOT_FILES, f"only {sorted(ROOT_FILES)} at the package root; found {sorted(files - ROOT_FILES)}"
    layers = set(RANK) - {API, "__main__"}
    assert folders == layers, f"unknown folders {sorted(folders - layers)}; missing layers {sorted(layers - folders)}"
    assert all((PACKAGE / f / "__init__.py").is_file() for f in folders)


@pytest.mark.parametrize("folder", ["insid3lab", "tests"])
def test_no_python_file_is_longer_than_about_500_lines(folder):
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (split them by idea): {long}"


# The checker itself, on small made-up packages.


def _check(files: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Violations and cycles of a made-up package ``{relative path: source}``."""
    sources = {}
    for rel, text in files.items():
        path = PACKAGE / rel
        sources[module_name(path, PACKAGE)] = (path, text)
    imports = all_imports(sources)
    return violations(imports, sources), cycles(import_graph(imports, set(sources)))


def test_the_checker_names_the_file_line_and_import_that_points_up():
    found, _ = _check(
        {
            "__init__.py": "",
            "model/__init__.py": "",
            "tasks/__init__.py": "",
            "tasks/tracking.py": "",
            "model/insid3.py": "import torch\n\n\ndef track(x):\n    from insid3lab.tasks.tracking import track\n",
        }
    )
    assert found == [
        "insid3lab/model/insid3.py:5: model imports tasks (insid3lab.tasks.tracking): "
        "from insid3lab.tasks.tracking import track"
    ]


def test_the_checker_resolves_relative_imports_and_submodules_named_in_from_imports():
    found, _ = _check(
        {
            "__init__.py": "",
            "stages/__init__.py": "",
            "stages/analysis.py": "from . import features\nfrom ..core import preprocess\nfrom ..method.params import P\n",
            "stages/features.py": "",
            "core/__init__.py": "",
            "core/preprocess.py": "",
            "method/__init__.py": "",
            "method/params.py": "",
        }
    )
    assert found == [
        "insid3lab/stages/analysis.py:3: stages imports method (insid3lab.method.params): from ..method.params import P"
    ]


def test_the_checker_holds_core_authors_and_eval_to_their_narrower_rules():
    found, _ = _check(
        {
            "__init__.py": "_EXPORTS = {'INSID3': 'insid3lab.model.insid3'}\n",
            "core/__init__.py": "",
            "core/digest.py": "from insid3lab.backbone import x\n",
            "backbone/__init__.py": "",
            "authors/__init__.py": "from insid3lab.core import digest\n",
            "model/__init__.py": "",
            "model/insid3.py": "",
            "tasks/__init__.py": "",
            "eval/__init__.py": "",
            "eval/run.py": "from insid3lab import INSID3\nfrom insid3lab.core import digest\nfrom . import other\n"
            "from insid3lab import tasks\nimport insid3lab.model.insid3\n",
            "eval/other.py": "",
            "cli/__init__.py": "from insid3lab.eval import run\nfrom insid3lab.model import insid3\n",
        }
    )
    assert [f.split(":")[0] + ":" + f.split(":")[1] for f in found] == [
        "insid3lab/authors/__init__.py:1",
        "insid3lab/core/digest.py:1",
        "insid3lab/eval/run.py:4",
        "insid3lab/eval/run.py:5",
    ]


def test_the_checker_reports_a_cycle_as_a_closed_path_and_ignores_typing_only_imports():
    _, found = _check(
        {
            "__init__.py": "",
            "stages/__init__.py": "from .clustering import tree\n",
            "stages/clustering/__init__.py": "from . import tree\n",
            "stages/clustering/tree.py": "def f():\n    from insid3lab.stages.clustering import cut\n",
            "stages/clustering/cut.py": "from .tree import f\n",
            "stages/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from insid3lab.stages.b import B\n",
            "stages/b.py": "from insid3lab.stages.a import A\n",
        }
    )
    assert found == [
        ["insid3lab.stages.clustering.cut", "insid3lab.stages.clustering.tree", "insid3lab.stages.clustering.cut"]
    ]
