"""Every node is well formed and the pack's root exports them the way ComfyUI loads it."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

import nodes
from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

CATEGORIES = ("model/loaders", "advanced/model_merging", "image/upscaling", "image/degradation", "image/video",
              "dataset", "training")  # core's
TYPES = {"IMAGE", "MASK", "UPSCALE_MODEL", "VIDEO", "LOSS_MAP", "INT", "FLOAT", "STRING", "BOOLEAN"}


@pytest.fixture
def input_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ComfyUI's input directory with one folder in it, for the nodes that list its folders."""
    (tmp_path / "photos").mkdir()
    module = types.ModuleType("folder_paths")
    module.get_input_directory = lambda: str(tmp_path)
    module.get_input_subfolders = lambda: ["photos"]
    monkeypatch.setitem(sys.modules, "folder_paths", module)


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_input_types_are_well_formed(node_id: str, input_folder: None) -> None:
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("RealESR_") and node_id in NODE_DISPLAY_NAME_MAPPINGS
    assert cls.DESCRIPTION and cls.CATEGORY in CATEGORIES
    assert callable(getattr(cls(), cls.FUNCTION))
    assert all(t in TYPES for t in cls.RETURN_TYPES)
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"} and spec["required"]
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                assert kind and options.get("default", kind[0]) in kind
                continue
            assert kind in TYPES, f"{node_id}.{name}: {kind}"
            if "default" in options and kind in ("INT", "FLOAT"):
                assert options.get("min", -float("inf")) <= options["default"] <= options.get("max", float("inf"))


def test_root_package_loads_as_comfyui_loads_a_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    """ComfyUI imports the pack's folder by file location under the folder's name (any name, even one that is no
    identifier) and reads NODE_CLASS_MAPPINGS from it."""
    root = Path(nodes.__file__).resolve().parents[1]
    name = "ComfyUI-realesr"
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != root])
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    assert set(module.NODE_CLASS_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    assert module.NODE_DISPLAY_NAME_MAPPINGS == NODE_DISPLAY_NAME_MAPPINGS


PACK_PARTS = {"__init__.py", "nodes", "realesr_core"}
FLAGGED_MODULES = {"subprocess", "socket", "urllib", "http", "requests", "ftplib", "smtplib"}
FLAGGED_NAMES = {"os.environ", "os.getenv", "os.system", "os.popen", "eval", "exec"}


@pytest.mark.slow  # imports the whole pack in a fresh process: seconds
def test_what_comfyui_imports_passes_the_registry_scan() -> None:
    """No subprocess, environment reads, network code, eval or exec in any module of ours that loading the pack
    imports (the registry flags or bans versions with them)."""
    import ast
    import subprocess
    import textwrap

    script = textwrap.dedent("""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("realesr_pack", sys.argv[1] + "/__init__.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["realesr_pack"] = module
        spec.loader.exec_module(module)
        print(json.dumps([m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)]))
    """)
    root = Path(nodes.__file__).resolve().parents[1]
    loaded = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, check=True)
    files = {Path(f).resolve() for f in json.loads(loaded.stdout)}
    ours = sorted(f for f in files if f.is_relative_to(root) and f.relative_to(root).parts[0] in PACK_PARTS)
    assert any(p.name == "engine.py" for p in ours) and not any("cli" in p.parts for p in ours)
    problems = []
    for path in ours:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                problems += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in FLAGGED_MODULES]
            elif isinstance(node, (ast.Attribute, ast.Name)) and ast.unparse(node) in FLAGGED_NAMES:
                problems.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not problems


def test_requirements_are_the_projects_dependencies_and_never_move_numpy() -> None:
    """ComfyUI-Manager installs requirements.txt: the same requirements as pyproject's dependencies (those for the
    Pythons ComfyUI runs on), with imagecodecs kept below the first release that requires numpy>=2 (pip upgrades a
    numpy 1.26 held by another pack rather than pick an older imagecodecs: checked with pip's resolver)."""
    tomllib = pytest.importorskip("tomllib")
    root = Path(nodes.__file__).resolve().parents[1]
    lines = (root / "requirements.txt").read_text().splitlines()
    required = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    assert required == {d for d in project if "python_version <" not in d}
    assert "imagecodecs>=2024.1,<2026.3.6" in required
