"""Loads each example workflow into ComfyUI's real frontend in headless Chromium, converts it with the
frontend's own `graphToPrompt`, checks that it equals our converter's API prompt, checks the layout as the frontend
draws it (no node over another, every node inside the canvas area no toolbar covers, at the saved view), checks that
our extension shows exactly the widgets each mode uses (every mode of every node, tried through the widget's own
callback), and screenshots the canvas.

    python main.py --cpu --port 8188            # ComfyUI with this pack in custom_nodes
    pip install playwright && apt-get install chromium
    python tools/check_in_frontend.py --shots /tmp/shots

Before each check the page must be settled, as read from the page itself: no dialog open (the template browser
opens on a first visit, late under load; Escape is pressed until it is gone) and a frame drawn after the workflow
was loaded, with every node among those drawn. A prompt that differs is read again before it is reported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from workflow_format import FREE_CANVAS, TITLE_HEIGHT, to_api

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXTENSION = "realesr.modeWidgets"
PROMPT_READS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--shots", type=Path, help="folder for canvas screenshots")
    parser.add_argument("--only", nargs="*", help="workflow names to check")
    args = parser.parse_args()
    failures = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(args.server, wait_until="networkidle", timeout=120_000)
        page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=120_000)
        rules = page.evaluate(f"() => app.extensions.find(e => e.name === '{EXTENSION}')?.rules ?? null")
        if rules is None:
            print(f"the frontend did not load our extension {EXTENSION}")
            failures += 1
        for path in sorted((ROOT / "example_workflows").glob("*.json")):
            if args.only and path.stem not in args.only:
                continue
            workflow = json.loads(path.read_text())
            loaded_at = page.evaluate("async (w) => { const t = performance.now(); await app.loadGraphData(w); "
                                      "return t; }", workflow)
            settle(page, loaded_at)
            difference = prompt_difference(page, to_api(workflow))
            failures += bool(difference)
            verdict = f"DIFFERS from ours: {difference}" if difference else "equals ours"
            print(f"{path.stem}: the frontend's prompt {verdict}")
            problems = layout_problems(page)
            failures += bool(problems)
            print(f"{path.stem}: layout {'; '.join(problems) or 'readable'}")
            if rules:
                wrong = mode_widget_problems(page, rules)
                failures += bool(wrong)
                print(f"{path.stem}: mode widgets {'; '.join(wrong) or 'as the modes use them'}")
            if args.shots:
                args.shots.mkdir(parents=True, exist_ok=True)
                settle(page, page.evaluate("() => { app.canvas.setDirty(true, true); return performance.now(); }"))
                page.screenshot(path=str(args.shots / f"{path.stem}.png"))
        browser.close()
    print(f"page errors: {errors or 'none'}")
    raise SystemExit(1 if failures or errors else 0)


def settle(page: Page, since: float, timeout: float = 60.0) -> None:
    """Waits until no dialog is open and the canvas drew a frame after `since` (performance.now() on the page) with
    every node of the graph among the drawn ones; presses Escape while a dialog is open."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = page.evaluate("""(since) => {
            const open = [...document.querySelectorAll('[role="dialog"], .p-dialog-mask')]
                .filter(e => e.getClientRects().length > 0);
            const drawn = new Set((app.canvas.visible_nodes ?? []).map(n => n.id));
            return {dialogs: open.map(e => `${e.className.split(' ')[0] || e.tagName}: ${(e.innerText || '').slice(0, 60)}`),
                    drawnAfter: app.canvas.last_draw_time > since,
                    undrawn: app.graph._nodes.filter(n => !drawn.has(n.id)).length};
        }""", since)
        if state["dialogs"]:
            page.keyboard.press("Escape")
        elif state["drawnAfter"] and not state["undrawn"]:
            return
        else:
            page.evaluate("() => app.canvas.setDirty(true, true)")
        page.wait_for_timeout(250)
    raise RuntimeError(f"the page did not settle within {timeout:.0f} s: {state}")


def prompt_difference(page: Page, expected: dict) -> str:
    """'' when the frontend's API prompt equals `expected`, else the nodes that differ (after PROMPT_READS reads, a
    second apart: a prompt read while widgets still arrive is not reported)."""
    difference = ""
    for attempt in range(PROMPT_READS):
        prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
        for node in prompt.values():
            node.pop("_meta", None)
        if prompt == expected:
            return ""
        differing = sorted(set(prompt) ^ set(expected)) + [k for k in prompt if k in expected and prompt[k] != expected[k]]
        difference = ", ".join(f"#{k}: {json.dumps(prompt.get(k))} vs {json.dumps(expected.get(k))}" for k in differing)
        page.wait_for_timeout(1000 * (attempt + 1))
    return difference


def mode_widget_problems(page: Page, rules: dict) -> list[str]:
    """Every mode of every node our extension governs, set through the mode widget's callback as a click does:
    the widgets the mode ignores are hidden, the others shown, and the saved mode is back afterwards."""
    seen = page.evaluate("""(rules) => {
        const seen = [];
        for (const node of app.graph._nodes.filter(n => rules[n.comfyClass])) {
            for (const modeName of Object.keys(rules[node.comfyClass])) {
                const mode = node.widgets.find(w => w.name === modeName);
                const saved = mode.value;
                const hidden = () => node.widgets.filter(w => w.hidden).map(w => w.name).sort();
                seen.push({node: node.comfyClass, id: node.id, mode: modeName, value: saved, hidden: hidden()});
                for (const value of mode.options.values) {
                    mode.value = value;
                    mode.callback?.(value);
                    seen.push({node: node.comfyClass, id: node.id, mode: modeName, value, hidden: hidden()});
                }
                mode.value = saved;
                mode.callback?.(saved);
                seen.push({node: node.comfyClass, id: node.id, mode: modeName, value: saved, hidden: hidden(),
                           restored: true});
            }
        }
        return seen;
    }""", rules)
    problems = []
    for entry in seen:
        governed = rules[entry["node"]][entry["mode"]]
        expected = sorted(name for name, used_in in governed.items() if entry["value"] not in used_in)
        if entry["hidden"] != expected:
            when = "after restoring" if entry.get("restored") else "with"
            problems.append(f"{entry['node']} #{entry['id']} {when} {entry['mode']}={entry['value']!r} hides "
                            f"{entry['hidden']}, expected {expected}")
    return problems


def layout_problems(page: Page) -> list[str]:
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
    return problems + note_problems(page)


NOTE_ROOM = 0.8  # a note's text may fill this much of its box: a larger font setting or other fonts need the rest


def note_problems(page: Page) -> list[str]:
    """Notes whose text needs more than NOTE_ROOM of the box the frontend draws it in (measured on the page)."""
    notes = page.evaluate("""() => app.graph._nodes.filter(n => n.type === 'Note').map(n => {
        const box = n.widgets?.[0]?.element;
        if (!box) return [`${n.title} (#${n.id})`, null, null];
        const height = box.style.height;
        box.style.height = '0px';  // the text's own height, read as the box's scroll height
        const needed = box.scrollHeight;
        box.style.height = height;
        return [`${n.title} (#${n.id})`, needed, box.clientHeight];
    })""")
    return [f"{title} has no text box drawn" if needed is None else
            f"{title}'s text needs {needed} px of its {shown} px box" for title, needed, shown in notes
            if needed is None or needed > NOTE_ROOM * shown]


if __name__ == "__main__":
    main()
