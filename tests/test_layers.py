"""The house stays in wings: no import circle inside phototag/, and no import from a lower wing back up
to a higher one, counting the imports made inside functions. training/ uses only public names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "phototag"

# Lowest first. A module may import from its own wing and from wings below it, never above.
WINGS = [
    ("errors", "config", "runtime"),  # what everything stands on
    ("faces",),  # detection, alignment, the face engine
    ("ages",),  # the age model and groups
    ("store",),  # the index
    ("tags",),  # EXIF, sidecars, tags rebuilt from the index
    ("people",),  # grouping, birth dates, the user's decisions
    ("scan",),  # walk, decode, the pipeline
    ("render",),  # annotated copies, contact sheets
    ("cli",),  # the command line
    ("__init__", "__main__"),  # the public names, `python -m phototag`
]
LEVEL = {name: i for i, names in enumerate(WINGS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every phototag module `name` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import mmod` imports a module; `from .x import y` a name
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {t for t in found if t in known and t != name}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_runs_from_a_lower_wing_up_to_a_higher_one():
    modules = _modules()
    assert set(map(_wing, modules)) <= set(LEVEL), "a wing that WINGS does not place: " + \
        ", ".join(sorted(set(map(_wing, modules)) - set(LEVEL)))
    upward = []
    for name, path in modules.items():
        for target in _imports(name, path, set(modules)):
            if target == "phototag":  # `from .. import __version__`: the version string alone
                continue
            if LEVEL[_wing(target)] > LEVEL[_wing(name)]:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports from a lower wing up to a higher one:\n" + "\n".join(sorted(upward))


def test_there_is_no_import_circle():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) - {"phototag"} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_check_sees_an_import_made_inside_a_function(tmp_path):
    """The checks would miss nothing a lazy import hides: an import inside a function counts."""
    modules = _modules()
    imports = _imports("phototag.cli.common", modules["phototag.cli.common"], set(modules))
    assert "phototag.store.index" in imports  # `db_path` imports it inside the function


def test_training_uses_only_public_names_of_phototag():
    private = []
    for path in (ROOT / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("phototag"):
                names = [a.name for a in node.names]
                if any(part.startswith("_") for part in node.module.split(".")) or any(n.startswith("_") for n in names):
                    private.append(f"{path.relative_to(ROOT)}: from {node.module} import {', '.join(names)}")
    assert not private, "\n".join(private)
