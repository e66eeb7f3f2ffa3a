"""Package faces are the only door: the adapters (ComfyUI nodes, the command line, benchmarks, tools) import the
library only through `realesr_core` or `realesr_core.<package>`, and the library never imports its command line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "realesr_core"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import of `realesr_core` in the file."""
    found = []
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found.append((node.lineno, base))
    return [(line, name) for line, name in found if name.split(".")[0] == "realesr_core"]


# adapters that reach inside on purpose, with the reason
REACHING_INSIDE = {
    "bench/tiling.py": ("realesr_core.models.archs", "turns the RRDB last stage's strips off to measure them against a "
                        "whole-stage run: a knob no user should have"),
}


def _is_a_face(name: str) -> bool:
    """`realesr_core`, one of its packages (its `__init__`), or one of its top-level modules."""
    return len(name.split(".")) <= 2


def test_adapters_import_only_package_faces() -> None:
    adapters = [*ROOT.glob("nodes/**/*.py"), *ROOT.glob("bench/**/*.py"), *ROOT.glob("tools/**/*.py"),
                *LIBRARY.glob("cli/**/*.py"), ROOT / "__init__.py"]
    problems = []
    for path in adapters:
        for line, name in _imports(path):
            inside_cli = path.is_relative_to(LIBRARY / "cli") and name.startswith("realesr_core.cli")
            allowed = REACHING_INSIDE.get(path.relative_to(ROOT).as_posix(), ("",))[0] == name
            if not (_is_a_face(name) or inside_cli or allowed):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not problems, "\n".join(problems)


def test_the_library_never_imports_its_command_line_or_argparse() -> None:
    problems = []
    for path in LIBRARY.rglob("*.py"):
        if path.is_relative_to(LIBRARY / "cli") or path == LIBRARY / "__main__.py":  # `python -m realesr_core`
            continue
        tree = ast.parse(path.read_text())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [name for _, name in _imports(path)]
        problems += [f"{path.relative_to(ROOT)}: {name}" for name in names
                     if name == "argparse" or name.startswith("realesr_core.cli")]
    assert not problems, "\n".join(problems)
