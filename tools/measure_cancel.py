"""Times Cancel in a running ComfyUI: an upscale through our Upscale node at its defaults is queued, Cancel is
pressed (POST /interrupt) a given number of seconds after the node started, and the time until ComfyUI reports the
prompt interrupted is printed, with what the cancelled run left: its outputs in /history and files in the output
folder (both must be empty).

    python main.py --cpu --port 8188                          # ComfyUI with this pack in custom_nodes
    python custom_nodes/realesr/tools/measure_cancel.py --image photo1024.png 0.3 0.8 1.5 3 5 30 120

Each delay is one run. ComfyUI's cache is emptied before each (POST /free), so the node really runs. Needs aiohttp
(ComfyUI's own dependency): run it with ComfyUI's Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

import aiohttp


def prompt(model: str, image: str, prefix: str, widgets: dict) -> dict:
    return {"1": {"class_type": "RealESR_LoadModel", "inputs": {"model_name": model}},
            "2": {"class_type": "LoadImage", "inputs": {"image": image}},
            "3": {"class_type": "RealESR_Upscale", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0], **widgets}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}}}


async def node_defaults(session: aiohttp.ClientSession, server: str, node: str) -> dict:
    """The node's widget defaults, as a new node in the frontend has them."""
    async with session.get(f"http://{server}/object_info/{node}") as response:
        required = (await response.json())[node]["input"]["required"]
    defaults = {}
    for name, spec in required.items():
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list):
            defaults[name] = options.get("default", kind[0])
        elif "default" in options:
            defaults[name] = options["default"]
    return defaults


async def one(server: str, output: Path, model: str, image: str, delay: float) -> dict:
    client, prefix = str(uuid.uuid4()), f"cancel/{uuid.uuid4().hex[:8]}"
    state: dict = {"started": None, "pressed": None, "ended": None, "outcome": None}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{server}/free", json={"free_memory": True}):
            pass  # a finished run leaves the node's output in ComfyUI's cache
        await asyncio.sleep(2)
        widgets = await node_defaults(session, server, "RealESR_Upscale")
        async with session.ws_connect(f"ws://{server}/ws?clientId={client}") as socket:
            body = {"prompt": prompt(model, image, prefix, widgets), "client_id": client}
            async with session.post(f"http://{server}/prompt", json=body) as response:
                prompt_id = (await response.json())["prompt_id"]

            async def press() -> None:
                while state["started"] is None and state["ended"] is None:
                    await asyncio.sleep(0.02)
                if state["ended"] is None:
                    await asyncio.sleep(max(0.0, state["started"] + delay - time.monotonic()))
                if state["ended"] is None:
                    async with session.post(f"http://{server}/interrupt"):
                        state["pressed"] = time.monotonic()

            presser = asyncio.create_task(press())
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                kind, data = event["type"], event.get("data", {})
                if kind == "executing" and data.get("node") == "3" and state["started"] is None:
                    state["started"] = time.monotonic()
                if kind in ("execution_interrupted", "execution_success", "execution_error") and \
                        data.get("prompt_id") == prompt_id:
                    state["ended"], state["outcome"] = time.monotonic(), kind
                    break
            await presser
        history: dict = {}
        for _ in range(100):  # written just after the websocket's last event
            async with session.get(f"http://{server}/history/{prompt_id}") as response:
                history = (await response.json()).get(prompt_id, {})
            if history:
                break
            await asyncio.sleep(0.2)
    pressed = state["pressed"]
    return {"pressed_after_s": delay, "outcome": state["outcome"],
            "cancel_s": None if pressed is None else round(state["ended"] - pressed, 2),
            "node_ran_s": round((pressed or state["ended"]) - state["started"], 1),
            "outputs": history.get("outputs"), "files": sorted(p.name for p in output.glob(f"{prefix}_*"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("delays", nargs="+", type=float, help="seconds after the Upscale node started")
    parser.add_argument("--server", default="127.0.0.1:8188")
    parser.add_argument("--model", default="RealESRGAN_x4plus")
    parser.add_argument("--image", default="example.png", help="an image in ComfyUI's input folder")
    parser.add_argument("--comfy-output", type=Path, default=Path("output"), help="ComfyUI's output folder")
    args = parser.parse_args()
    for delay in args.delays:
        result = asyncio.run(one(args.server, args.comfy_output, args.model, args.image, delay))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
