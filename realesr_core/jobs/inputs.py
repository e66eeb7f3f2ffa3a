"""The inputs of a run over files, and one output name for each.

Files are taken as given; folders are searched, sub-folders too unless `recursive` is off, and their tree is mirrored
under the output folder (or each output goes beside its input). The walk is lazy, one folder at a time, in a fixed
order (names sorted, each folder's files before its sub-folders), so a run over a million files starts at once and
holds one folder's listing, never the whole tree.

Naming rule: an input's outputs are named after its stem (`IMG_1.JPG` -> `IMG_1_x4.png`). Where several inputs of the
same kind (images, or videos) whose outputs land in one folder share a stem (compared ignoring case, as on Windows and
macOS disks), each of them carries its own suffix: `IMG_1.JPG` -> `IMG_1_jpg_x4.png` and `IMG_1.PNG` ->
`IMG_1_png_x4.png`, whichever is met first. Where even that is taken by another input's stem, a number follows
(`IMG_1_jpg2`).

Hidden files and folders (their names start with a dot: the system's, and this tool's own temporaries and work
folders) are not inputs; neither are links to folders (not followed, so a link cannot loop) nor the output folder when
it lies inside an input folder. All of these, and files that are not images or videos, are listed in `skipped`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RealESRError
from ..media.kinds import MEDIA_SUFFIXES, NOT_MEDIA, Identified, identify


class PlanError(RealESRError):
    """The run cannot start as asked (an output would replace an input, an output that is not where it can be
    written): nothing was done."""


@dataclass(frozen=True)
class Named:
    """One input with the folder its outputs go to and the stem they are named after. `what` is what the file holds;
    `problem` says why it cannot be used (damaged, missing, unreadable folder), a failure to report; `renamed` why
    `stem` is not the input's own."""

    path: Path
    out_dir: Path
    stem: str
    what: Identified
    problem: str = ""
    renamed: str = ""


class SkipList:
    """What a run left out and why: every file counted under its reason, the first few of each reason kept by name
    (a folder of a million sidecar files must not fill the memory)."""

    EXAMPLES = 5

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[Path]] = {}

    def add(self, path: Path, why: str) -> None:
        self.counts[why] = self.counts.get(why, 0) + 1
        examples = self.examples.setdefault(why, [])
        if len(examples) < self.EXAMPLES:
            examples.append(path)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line: how many were skipped, and by reason which ("" when nothing was)."""
        if not self.counts:
            return ""
        parts = []
        for why, count in self.counts.items():
            shown = ", ".join(str(path) for path in self.examples[why])
            more = f" and {count - len(self.examples[why])} more" if count > len(self.examples[why]) else ""
            parts.append(f"{count} {why} ({shown}{more})")
        return f"skipped {len(self)}: {'; '.join(parts)}"


@dataclass
class _Tree:
    """Input folders merged under one output folder (their files side by side, their sub-folders mirrored), and
    files given one by one whose outputs go straight into it."""

    out_root: Path
    folders: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class Inputs:
    """The inputs of one run: `inputs` as given (files and folders), outputs in `output_dir` (None: beside each
    input). `accepts(what)` says whether this run takes a file of that kind; `label` names what a rejected kind is
    skipped as ("a video (degrade takes images)"). Iterating yields every input, named, folder by folder."""

    def __init__(self, inputs: Sequence[str | os.PathLike], output_dir: Path | None, *, recursive: bool = True,
                 accepts: Callable[[Identified], str] | None = None) -> None:
        self.recursive = recursive
        self.output_dir = output_dir
        self.skipped = SkipList()
        self._accepts = accepts or (lambda what: "")
        self._missing: list[Path] = []
        folders, files = self._sort(inputs)
        self.folders, self.files = folders, files
        # the output folder is no input where it lies inside an input folder (a re-run would upscale the results)
        inside = output_dir is not None and any(_inside(output_dir.resolve(), f.resolve()) for f in folders)
        self._excluded = {output_dir.resolve()} if inside and output_dir is not None else set()
        self._trees = self._make_trees(folders, files)

    def _sort(self, inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
        """Folders (each once; one inside another, already searched, dropped) and files (each once; dropped where a
        folder's search reaches them) as given."""
        folders: list[Path] = []
        files: list[Path] = []
        for item in inputs:
            path = Path(item)
            if path.is_dir():
                if not any(_same(path, folder) for folder in folders):
                    folders.append(path)
            elif path.exists():
                if not any(_same(path, file) for file in files):
                    files.append(path)
            else:
                self._missing.append(path)
        if self.recursive:
            nested = [inner for inner in folders for outer in folders
                      if inner is not outer and _inside(inner.resolve(), outer.resolve())]
            for inner in nested:
                self.skipped.add(inner, "folders inside another input folder (searched with it)")
            folders = [folder for folder in folders if folder not in nested]
        files = [file for file in files if not any(self._reached(file, folder) for folder in folders)]
        return folders, files

    def _reached(self, file: Path, folder: Path) -> bool:
        """Whether searching `folder` finds `file` (so it is not planned twice)."""
        relative = _relative(file.resolve().parent, folder.resolve())
        if relative is None or any(part.startswith(".") for part in relative.parts) or file.name.startswith("."):
            return False
        return self.recursive or relative == Path()

    def _make_trees(self, folders: list[Path], files: list[Path]) -> list[_Tree]:
        if self.output_dir is not None:
            return [_Tree(self.output_dir, folders, files)]
        trees = [_Tree(folder, [folder]) for folder in folders]
        by_parent: dict[Path, _Tree] = {}
        for file in files:
            parent = file.parent
            if parent not in by_parent:
                by_parent[parent] = _Tree(parent)
                trees.append(by_parent[parent])
            by_parent[parent].files.append(file)
        return trees

    def __iter__(self) -> Iterator[Named]:
        for path in self._missing:
            yield Named(path, path.parent, path.stem, Identified(None), problem="does not exist")
        for tree in self._trees:
            for out_dir, files, problems in self._folders(tree):
                yield from problems
                yield from self._named(out_dir, files, {*tree.files})

    def _folders(self, tree: _Tree) -> Iterator[tuple[Path, list[Path], list[Named]]]:
        """(output folder, input files, unreadable folders) per folder of the merged tree, depth first, sorted."""
        pending = [Path()]
        while pending:
            relative = pending.pop()
            files: list[Path] = []
            problems: list[Named] = []
            subfolders: set[str] = set()
            for folder in tree.folders:
                here = folder / relative
                try:
                    entries = sorted(os.scandir(here), key=lambda entry: entry.name)
                except FileNotFoundError:
                    continue  # a sub-folder only another of the merged folders has
                except OSError as exc:
                    problems.append(Named(here, tree.out_root / relative, here.name, Identified(None),
                                          problem=f"cannot search this folder: {exc.strerror or exc}"))
                    continue
                for entry in entries:
                    path = here / entry.name
                    if entry.name.startswith("."):
                        self.skipped.add(path, "hidden")
                    elif entry.is_dir(follow_symlinks=False):
                        if path.resolve() in self._excluded:
                            self.skipped.add(path, "the output folder")
                        elif self.recursive:
                            subfolders.add(entry.name)
                        else:
                            self.skipped.add(path, "sub-folders (not searched: --no-recursive)")
                    elif entry.is_dir():
                        self.skipped.add(path, "links to folders (not followed)")
                    elif entry.is_file():
                        files.append(path)
                    else:
                        self.skipped.add(path, "not a regular file")
            if relative == Path():
                files += tree.files
            yield tree.out_root / relative, files, problems
            pending.extend(relative / name for name in sorted(subfolders, reverse=True))

    def _named(self, out_dir: Path, files: list[Path], given: set[Path]) -> Iterator[Named]:
        """The files of one output folder with their output stems, by stem: alike inputs sharing a stem are
        renamed by the naming rule."""
        taken = {path.stem.casefold() for path in files}  # a renamed stem must not be another input's own
        runs: dict[str, list[Path]] = {}
        for path in sorted(files, key=lambda p: (p.stem.casefold(), p.name)):
            runs.setdefault(path.stem.casefold(), []).append(path)
        for run in runs.values():
            found = [(path, identify(path)) for path in run]
            usable: list[tuple[Path, Identified]] = []
            for path, what in found:
                refused = self._accepts(what) if what else ""
                if what and not refused:
                    usable.append((path, what))
                elif what:
                    self.skipped.add(path, refused)
                elif path in given or path.suffix.lower() in MEDIA_SUFFIXES:
                    yield Named(path, out_dir, path.stem, what, problem=_unusable(what))
                else:
                    self.skipped.add(path, what.why)
            for path, what in usable:
                alike = [other for other, other_what in usable if other_what.kind == what.kind and other != path]
                if not alike:
                    yield Named(path, out_dir, path.stem, what)
                    continue
                stem = _free(f"{path.stem}_{path.suffix[1:].lower() or 'file'}", taken)
                taken.add(stem.casefold())
                yield Named(path, out_dir, stem, what,
                            renamed=f"shares its name with {', '.join(other.name for other in alike)}")

    def is_input(self, path: Path) -> bool:
        """Whether `path` (an existing file) is one of this run's inputs: given, or found by the search and a file
        the run would try (an image or video, or a damaged one by its suffix)."""
        if any(_same(path, file) for file in self.files):
            return True
        resolved = path.resolve()
        if any(_inside(resolved, excluded) for excluded in self._excluded):
            return False
        for folder in self.folders:
            relative = _relative(resolved.parent, folder.resolve())
            if relative is None or any(part.startswith(".") for part in (*relative.parts, path.name)):
                continue
            if self.recursive or relative == Path():
                what = identify(path)
                return (bool(what) and not self._accepts(what)) or path.suffix.lower() in MEDIA_SUFFIXES
        return False


def _unusable(what: Identified) -> str:
    """Why a file that should be an image or video (given by name, or named like one) cannot be used."""
    if what.why == NOT_MEDIA:
        return "not an image or video this tool reads (damaged, or not what its name says)"
    return f"{what.why} ({what.format})" if what.format else what.why


def _free(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem` with the first number from 2 that makes it one no other input has."""
    candidate, number = stem, 2
    while candidate.casefold() in taken:
        candidate, number = f"{stem}{number}", number + 1
    return candidate


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def _relative(path: Path, folder: Path) -> Path | None:
    return path.relative_to(folder) if path.is_relative_to(folder) else None
