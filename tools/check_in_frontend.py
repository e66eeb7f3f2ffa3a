"""Loads each example workflow into ComfyUI's real frontend in headless Chromium, converts it with the
frontend's own `graphToPrompt`, checks that it equals our converter's API prompt, checks the layout as the frontend
draws it (no node over another, every node inside the canvas area no toolbar covers, at the saved view), and
screenshots the canvas.

    python main.py --cpu --port 8188            # ComfyUI with this pack in custom_nodes
    pip install playwright && apt-get install chromium
    python tools/check_in_frontend.py --shots /tmp/shots
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from playwright.sync_api import sync_playwright

from workflow_format import FREE_CANVAS, TITLE_HEIGHT, to_api

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--shots", type=Path, help="folder for canvas screenshots")
    args = parser.parse_args()
    failures = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(args.server, wait_until="networkidle", timeout=120_000)
        page.wait_for_function("window.app && window.app.graph", timeout=120_000)
        page.keyboard.press("Escape")  # the template browser that opens on a first visit
        for path in sorted((ROOT / "example_workflows").glob("*.json")):
            workflow = json.loads(path.read_text())
            page.evaluate("async (w) => { await window.app.loadGraphData(w); }", workflow)
            page.wait_for_timeout(1000)
            prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
            for node in prompt.values():
                node.pop("_meta", None)
            same = prompt == to_api(workflow)
            failures += not same
            print(f"{path.stem}: the frontend's prompt {'equals' if same else 'DIFFERS from'} ours")
            problems = layout_problems(page)
            failures += bool(problems)
            print(f"{path.stem}: layout {'; '.join(problems) or 'readable'}")
            if args.shots:
                args.shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.shots / f"{path.stem}.png"))
        browser.close()
    print(f"page errors: {errors or 'none'}")
    raise SystemExit(1 if failures or errors else 0)


def layout_problems(page) -> list[str]:
    """Overlapping nodes and nodes outside the free canvas area, from the sizes the frontend really draws."""
    drawn = page.evaluate("""() => ({scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset],
        nodes: app.graph._nodes.map(n => {
            const least = n.computeSize();
            return [`${n.title} (#${n.id})`, n.pos[0], n.pos[1], Math.max(n.size[0], least[0]),
                    Math.max(n.size[1], least[1])];
        })})""")
    scale, (dx, dy) = drawn["scale"], drawn["offset"]
    boxes = {title: ((x + dx) * scale, (y - TITLE_HEIGHT + dy) * scale, (x + w + dx) * scale, (y + h + dy) * scale)
             for title, x, y, w, h in drawn["nodes"]}
    problems = [f"{a} overlaps {b}" for a in boxes for b in boxes if a < b and boxes[a][0] < boxes[b][2]
                and boxes[b][0] < boxes[a][2] and boxes[a][1] < boxes[b][3] and boxes[b][1] < boxes[a][3]]
    left, top, right, bottom = FREE_CANVAS
    problems += [f"{title} is partly hidden" for title, box in boxes.items()
                 if box[0] < left - 1 or box[1] < top - 1 or box[2] > right + 1 or box[3] > bottom + 1]
    return problems


if __name__ == "__main__":
    main()
