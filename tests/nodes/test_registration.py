"""Every node is well formed and the pack's root exports them the way ComfyUI loads it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import nodes
from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

CATEGORIES = ("model/loaders", "advanced/model_merging", "image/upscaling", "image/degradation")  # today's core's
TYPES = {"IMAGE", "MASK", "UPSCALE_MODEL", "INT", "FLOAT", "STRING", "BOOLEAN"}


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_input_types_are_well_formed(node_id: str) -> None:
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
