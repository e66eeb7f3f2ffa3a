"""The frontend extension in web/ (served through WEB_DIRECTORY): its rules name real nodes, widgets and modes, so a
renamed input cannot leave a widget hidden for good. In the real frontend it is checked by tools/check_in_frontend.py."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import nodes
from nodes import NODE_CLASS_MAPPINGS

ROOT = Path(nodes.__file__).resolve().parents[1]


def rules() -> dict:
    script = (ROOT / "web" / "mode_widgets.js").read_text()
    found = re.search(r"// RULES BEGIN\s*const RULES = (.*?);\s*// RULES END", script, re.S)
    assert found, "mode_widgets.js must keep its RULES object between the markers"
    return json.loads(found.group(1))


def _widgets(node_id: str) -> dict:
    spec = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    return {**spec.get("required", {}), **spec.get("optional", {})}


def test_every_rule_names_a_real_mode_and_widget() -> None:
    assert set(rules()) == {"RealESR_Upscale", "RealESR_UpscaleVideo", "RealESR_Noise", "RealESR_Blur"}
    for node_id, modes in rules().items():
        widgets = _widgets(node_id)
        for mode, governed in modes.items():
            choices = widgets[mode][0]
            assert isinstance(choices, list), f"{node_id}.{mode} is no combo"
            for name, used_in in governed.items():
                assert name in widgets and name != mode, f"{node_id} has no widget {name}"
                assert used_in and set(used_in) <= set(choices), f"{node_id}.{name}: {used_in} not in {choices}"


def test_the_upscale_node_shows_factor_and_size_only_where_used() -> None:
    size_mode = rules()["RealESR_Upscale"]["size_mode"]
    shown = {mode: sorted(w for w, used_in in size_mode.items() if mode in used_in)
             for mode in _widgets("RealESR_Upscale")["size_mode"][0]}
    assert shown == {"model scale": [], "factor": ["factor"], "width": ["size"], "height": ["size"],
                     "longest side": ["size"]}


def test_the_pack_serves_its_web_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("realesr_pack", ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "realesr_pack", module)
    spec.loader.exec_module(module)
    assert (ROOT / module.WEB_DIRECTORY / "mode_widgets.js").is_file()
