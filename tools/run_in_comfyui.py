"""Runs the example workflows in a running ComfyUI (on loopback) and makes their thumbnails from the real outputs.

    python main.py --cpu --port 8188                       # in a ComfyUI checkout with this pack in custom_nodes
    python tools/run_in_comfyui.py --image astronaut.png   # an image in ComfyUI's input folder
    python tools/run_in_comfyui.py --video clip.mp4 --only realesr_upscale_video   # a video there, for Load Video

Each workflow is converted to API format, queued through POST /prompt and awaited through /history; its output
images (of a video: its middle frame) are fetched from /view. The thumbnail `<name>.jpg` shows the input beside the
output (or the two outputs).
Workflows that need a checkpoint run with --with-checkpoint; with --stand-in their realesr stages run on the
input image instead of a generated one (the first VAE decode becomes LoadImage, the rest of the generation is
dropped), which is how their thumbnails are made on a machine without a checkpoint.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from workflow_format import to_api

ROOT = Path(__file__).resolve().parents[1]
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov")
NEEDS_CHECKPOINT = {"CheckpointLoaderSimple"}
THUMBNAIL_HEIGHT = 320


def call(server: str, path: str, payload: dict | None = None) -> bytes:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{server}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def run(server: str, prompt: dict, timeout: float) -> dict:
    try:
        queued = json.loads(call(server, "/prompt", {"prompt": prompt}))
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"ComfyUI refused the prompt: {error.read().decode()[:2000]}") from None
    if queued.get("node_errors"):  # ComfyUI runs the outputs that passed its checks and leaves out the others
        left_out = {node: [e["message"] + ": " + e["details"] for e in found["errors"]]
                    for node, found in queued["node_errors"].items()}
        print(f"  ComfyUI left out the outputs of nodes that failed its checks: {left_out}")
    prompt_id = queued["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = json.loads(call(server, f"/history/{prompt_id}"))
        if prompt_id in history:
            entry = history[prompt_id]
            status = entry.get("status", {})
            if status.get("status_str") == "error":
                raise RuntimeError(f"the workflow failed: {json.dumps(status.get('messages'))[:2000]}")
            return entry["outputs"]
        time.sleep(1.0)
    raise TimeoutError(f"no result after {timeout} s")


def stand_in(prompt: dict, image: str) -> dict:
    """The realesr stages of a generation workflow, fed by `image` instead of the first decoded generation."""
    decode = min((i for i, n in prompt.items() if n["class_type"] == "VAEDecode"), key=int)
    prompt = json.loads(json.dumps(prompt))
    prompt[decode] = {"class_type": "LoadImage", "inputs": {"image": image}}
    generated = {i for i, n in prompt.items() if n["class_type"] in NEEDS_CHECKPOINT}
    changed = True
    while changed:
        changed = False
        for i, node in prompt.items():
            sources = {v[0] for v in node["inputs"].values() if isinstance(v, list)}
            if i not in generated and sources & generated:
                generated.add(i)
                changed = True
    kept = {i: n for i, n in prompt.items() if i not in generated}
    if any(n["class_type"] == "SaveImage" for n in kept.values()):
        return kept
    last, following = decode, True
    while following:
        following = False
        for i, node in kept.items():
            if node["class_type"] != "SaveImage" and [last, 0] in node["inputs"].values():
                last, following = i, True
                break
    kept[str(max(int(i) for i in prompt) + 1)] = {"class_type": "SaveImage",
                                                  "inputs": {"images": [last, 0], "filename_prefix": "realesr/stand_in"}}
    return kept


def fetch_images(server: str, outputs: dict) -> list[Image.Image]:
    images = []
    for node_id in sorted(outputs, key=int):
        for item in outputs[node_id].get("images", []):
            query = urllib.parse.urlencode({k: item[k] for k in ("filename", "subfolder", "type")})
            data = io.BytesIO(call(server, f"/view?{query}"))
            images.append(video_frame(data) if item["filename"].endswith(VIDEO_SUFFIXES) else
                          Image.open(data).convert("RGB"))
    return images


def video_frame(source: io.BytesIO | Path) -> Image.Image:
    """The middle frame of a video; prints its frame count, size and streams."""
    import av

    with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
        streams = ", ".join(f"{s.type} {s.codec_context.name}" for s in container.streams)
    print(f"  video: {len(frames)} frames of {frames[0].width}x{frames[0].height}; streams: {streams}")
    return frames[len(frames) // 2]


def thumbnail(panels: list[Image.Image]) -> Image.Image:
    """The panels side by side, each scaled to one height."""
    scaled = [p.resize((round(p.width * THUMBNAIL_HEIGHT / p.height), THUMBNAIL_HEIGHT), Image.LANCZOS) for p in panels]
    sheet = Image.new("RGB", (sum(p.width for p in scaled) + 8 * (len(scaled) - 1), THUMBNAIL_HEIGHT), "white")
    x = 0
    for panel in scaled:
        sheet.paste(panel, (x, 0))
        x += panel.width + 8
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--image", default="example.png", help="image in ComfyUI's input folder for LoadImage")
    parser.add_argument("--video", default="clip.mp4", help="video in ComfyUI's input folder for LoadVideo")
    parser.add_argument("--comfy-input", type=Path, help="ComfyUI's input folder, to put the input in thumbnails")
    parser.add_argument("--with-checkpoint", action="store_true")
    parser.add_argument("--stand-in", action="store_true", help="run generation workflows on the input image")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--only", nargs="*", help="workflow names to run")
    parser.add_argument("--no-thumbnails", action="store_true", help="check the runs only; leave the thumbnails")
    args = parser.parse_args()
    for path in sorted((ROOT / "example_workflows").glob("*.json")):
        if args.only and path.stem not in args.only:
            continue
        prompt = to_api(json.loads(path.read_text()))
        if not args.with_checkpoint and any(n["class_type"] in NEEDS_CHECKPOINT for n in prompt.values()):
            if not args.stand_in:
                print(f"{path.stem}: skipped (needs a checkpoint)")
                continue
            prompt = stand_in(prompt, args.image)
        for node in prompt.values():
            if node["class_type"] == "LoadImage":
                node["inputs"]["image"] = args.image
            if node["class_type"] == "LoadVideo":
                node["inputs"]["file"] = args.video
        started = time.time()
        images = fetch_images(args.server, run(args.server, prompt, args.timeout))
        sizes = ", ".join(f"{im.width}x{im.height}" for im in images)
        print(f"{path.stem}: {len(images)} image(s) ({sizes}) in {time.time() - started:.0f} s")
        if args.no_thumbnails:
            continue
        panels = images
        if args.comfy_input and len(images) == 1:
            videos = any(n["class_type"] == "LoadVideo" for n in prompt.values())
            panels = [video_frame(args.comfy_input / args.video) if videos else
                      Image.open(args.comfy_input / args.image).convert("RGB"), *images]
        thumbnail(panels).save(path.with_suffix(".jpg"), quality=88)


if __name__ == "__main__":
    main()
