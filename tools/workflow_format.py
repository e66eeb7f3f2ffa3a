"""ComfyUI workflow formats for the example workflows: node signatures (ours from INPUT_TYPES, built-ins from
tools/comfy_builtin_nodes.json), UI-format building, and UI-to-API conversion as ComfyUI's frontend does it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nodes import NODE_CLASS_MAPPINGS  # noqa: E402

BUILTINS: dict[str, dict] = {
    k: v for k, v in json.loads((Path(__file__).with_name("comfy_builtin_nodes.json")).read_text()).items()
    if not k.startswith("_")
}
CONTROL = "(control)"
UPLOAD = "(upload)"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def signature(node_type: str) -> dict:
    """{"inputs": [[name, type]], "outputs": [[name, type]], "widgets": [name], "widget_specs": {name: spec}}."""
    if node_type in BUILTINS:
        return {**BUILTINS[node_type], "widget_specs": {}}
    cls = NODE_CLASS_MAPPINGS[node_type]
    spec = cls.INPUT_TYPES()
    inputs, widgets, widget_specs = [], [], {}
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                widgets.append(name)
                widget_specs[name] = (kind, options)
                if options.get("control_after_generate"):
                    widgets.append(CONTROL)
            else:
                inputs.append([name, kind])
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    outputs = [[n, t] for n, t in zip(names, cls.RETURN_TYPES, strict=True)]
    return {"inputs": inputs, "outputs": outputs, "widgets": widgets, "widget_specs": widget_specs,
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False))}


def widget_values(node_type: str, **values: Any) -> list:
    """Our node's widget values in INPUT_TYPES order: defaults, overridden by name; seeds stay 'fixed'."""
    sig = signature(node_type)
    out = []
    for name in sig["widgets"]:
        if name == CONTROL:
            out.append("fixed")
            continue
        kind, options = sig["widget_specs"][name]
        default = options.get("default", kind[0] if isinstance(kind, list) else None)
        out.append(values.pop(name, default))
    if values:
        raise KeyError(f"{node_type} has no widgets {sorted(values)}")
    return out


def build_ui(nodes: list[dict], title: str) -> dict:
    """nodes: [{"id", "type", "pos", "widgets": [...], "inputs": {name: [source id, output slot]}, "size"?}]."""
    links, ui_nodes = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    for node in nodes:
        sig = signature(node["type"])
        for slot, (name, kind) in enumerate(sig["inputs"]):
            if name in node.get("inputs", {}):
                source, source_slot = node["inputs"][name]
                link_id = len(links) + 1
                links.append([link_id, source, source_slot, node["id"], slot, kind])
                out_links.setdefault((source, source_slot), []).append(link_id)
    order = _topological(nodes)
    for node in nodes:
        sig = signature(node["type"])
        link_for = {(link[3], link[4]): link[0] for link in links}
        ui_nodes.append({
            "id": node["id"], "type": node["type"], "pos": node["pos"], "size": node.get("size", [320, 200]),
            "flags": {}, "order": order.index(node["id"]), "mode": 0,
            "inputs": [{"name": name, "type": kind, "link": link_for.get((node["id"], slot))}
                       for slot, (name, kind) in enumerate(sig["inputs"])],
            "outputs": [{"name": name, "type": kind, "links": out_links.get((node["id"], slot), []), "slot_index": slot}
                        for slot, (name, kind) in enumerate(sig["outputs"])],
            "properties": {"Node name for S&R": node["type"]},
            "widgets_values": node.get("widgets", []),
        })
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "groups": [], "config": {}, "extra": {"ds": opening_view(ui_nodes), "info": {"name": title}},
            "version": 0.4}


# The frontend (1.35) in a 1600x900 window: the part of the canvas that no toolbar, side bar, Run panel or minimap
# covers, in screen pixels (left, top, right, bottom); and the height of a node's title bar above its `pos`.
FREE_CANVAS = (70, 100, 1330, 880)
TITLE_HEIGHT = 30
MAX_SCALE = 0.8


def node_box(node: dict) -> tuple[float, float, float, float]:
    """A node's extent on the canvas, title bar included: (left, top, right, bottom)."""
    (x, y), (width, height) = node["pos"], node["size"]
    return x, y - TITLE_HEIGHT, x + width, y + height


def opening_view(nodes: list[dict]) -> dict:
    """The saved view (scale, offset) that shows every node, title bars included, inside FREE_CANVAS."""
    boxes = [node_box(n) for n in nodes]
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    free_left, free_top, free_right, free_bottom = FREE_CANVAS
    scale = min(MAX_SCALE, (free_right - free_left) / (right - left), (free_bottom - free_top) / (bottom - top))
    scale = int(scale * 100) / 100  # a scale the zoom box shows plainly
    return {"scale": scale, "offset": [free_left / scale - left, free_top / scale - top]}


def _topological(nodes: list[dict]) -> list[int]:
    done: list[int] = []
    pending = {n["id"]: {src for src, _ in n.get("inputs", {}).values()} for n in nodes}
    while pending:
        ready = sorted(i for i, deps in pending.items() if deps <= set(done))
        if not ready:
            raise ValueError("the workflow has a cycle")
        done += ready
        for i in ready:
            del pending[i]
    return done


def to_api(workflow: dict) -> dict:
    """UI format -> API format: active nodes only, widgets mapped to names, frontend-only values dropped."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        sig = signature(node["type"])
        if node.get("mode", 0) != 0 or BUILTINS.get(node["type"], {}).get("virtual"):
            continue
        inputs: dict[str, Any] = dict(BUILTINS.get(node["type"], {}).get("prompt_extras", {}))
        for name, value in zip(sig["widgets"], node["widgets_values"], strict=False):
            if name not in (CONTROL, UPLOAD):
                inputs[name] = value
        for slot_input in node["inputs"]:
            if slot_input["link"] is not None:
                link = links[slot_input["link"]]
                inputs[slot_input["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
