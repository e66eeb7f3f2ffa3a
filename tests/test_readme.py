"""The README welcomes: short, its first commands the demo and the tests, and every link resolves, inside the
archive ComfyUI's registry publishes (the repository less what `.comfyignore` leaves out) or, for what the archive
leaves out, in the repository on GitHub. The docs' links resolve in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/realesr/realesr/blob/main/"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _left_out() -> list[str]:
    lines = (ROOT / ".comfyignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def test_the_readme_is_short_and_starts_with_the_demo_and_the_tests() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    commands = re.findall(r"^bash (\S+)", text, flags=re.M)
    assert commands[:2] == ["tools/demo.sh", "tools/test.sh"]
    assert text.index("tools/test.sh") < 1500  # on the first screen


def test_every_readme_link_resolves_in_the_archive_or_the_repository() -> None:
    left_out = _left_out()
    for target in LINK.findall((ROOT / "README.md").read_text()):
        if target.startswith(REPOSITORY):
            assert (ROOT / target.removeprefix(REPOSITORY).split("#")[0]).exists(), target
            continue
        assert not target.startswith(("http://", "https://")), f"{target}: a link outside the project"
        path = target.split("#")[0]
        assert (ROOT / path).exists(), target
        assert not any(path == folder or path.startswith(folder + "/") for folder in left_out), (
            f"{target} is left out of the published archive: link it on {REPOSITORY}")


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_every_docs_link_resolves(page: str) -> None:
    for target in LINK.findall((ROOT / "docs" / page).read_text()):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        assert (ROOT / "docs" / target.split("#")[0]).resolve().exists(), f"docs/{page}: {target}"


@pytest.mark.parametrize("page", ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))])
def test_no_page_keeps_a_placeholder_for_figures_to_come(page: str) -> None:
    """A figure still to be measured shows as a line of capitals (e.g. WARMUP) where its table goes."""
    left = re.findall(r"^[A-Z][A-Z_]{5,}$", (ROOT / page).read_text(), flags=re.M)
    assert not left, f"{page}: {left}"
