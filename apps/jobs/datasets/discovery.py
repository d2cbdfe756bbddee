"""Walking the dataset roots: which dataset files exist (*.jsonl, *.txt), by stat alone.

Pure filesystem work, no Django: an unchanged file costs only its stat, what it holds is read by
validation later. Nothing outside the roots is followed: a symlink that resolves elsewhere is
refused with a reason; a symlinked folder is not descended (its target, if inside the roots, is
walked where it lies). Names starting with a dot (.git, an upload's temporary file) are skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from apps.jobs.domain.datasets import DatasetFormat, format_of
from apps.models.discovery import fingerprint, resolve_roots, under


@dataclass(frozen=True, slots=True)
class FoundDataset:
    """One dataset file as stat saw it."""

    root: str
    path: str  # relative to root
    size: int
    mtime_ns: int
    inode: int
    format: DatasetFormat

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.size, self.mtime_ns, self.inode)


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str  # absolute
    reason: str


@dataclass(frozen=True, slots=True)
class DatasetWalk:
    found: tuple[FoundDataset, ...]
    refused: tuple[Refusal, ...]  # symlinks leaving the roots, non-UTF-8 names, unreadable folders
    roots: tuple[str, ...]  # the resolved roots that were walked
    missing_roots: tuple[str, ...]  # roots that are not there or not folders


def stat_found(root: str, path: str) -> FoundDataset | None:
    """The dataset file at `path` under `root` as a walk would find it, or None when it is not a
    regular dataset file there."""
    fmt = format_of(path)
    try:
        info = os.stat(os.path.join(root, path), follow_symlinks=False)
    except OSError:
        return None
    if fmt is None or not stat.S_ISREG(info.st_mode):
        return None
    return FoundDataset(root, path, info.st_size, info.st_mtime_ns, info.st_ino, fmt)


def walk(roots: Iterable[str | Path]) -> DatasetWalk:
    """Every dataset file under the roots, and what was refused on the way."""
    resolved = resolve_roots(roots)
    found: list[FoundDataset] = []
    refused: list[Refusal] = []
    missing: list[str] = []
    for root in resolved:
        if not os.path.isdir(root):
            missing.append(root)
            continue
        stack = [root]
        while stack:
            _scan_folder(root, stack.pop(), resolved, stack, found, refused)
    return DatasetWalk(
        found=tuple(sorted(found, key=lambda f: (f.root, f.path))),
        refused=tuple(refused),
        roots=tuple(root for root in resolved if root not in missing),
        missing_roots=tuple(missing),
    )


def _scan_folder(
    root: str,
    folder: str,
    roots: list[str],
    stack: list[str],
    found: list[FoundDataset],
    refused: list[Refusal],
) -> None:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        refused.append(Refusal(folder, f"the folder could not be listed: {error.strerror or error}"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if not _is_text(entry.name):
            shown = os.fsencode(entry.path).decode("utf-8", "backslashreplace")
            refused.append(Refusal(shown, "the name is not UTF-8 text; rename it"))
            continue
        try:
            info = _entry_stat(entry, roots, stack, refused)
        except OSError as error:
            refused.append(Refusal(entry.path, error.strerror or str(error)))
            continue
        fmt = format_of(entry.name)
        if info is None or fmt is None:
            continue
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or a device would block or never end when read.
            refused.append(Refusal(entry.path, "not a regular file"))
            continue
        path = os.path.relpath(entry.path, root)
        found.append(FoundDataset(root, path, info.st_size, info.st_mtime_ns, info.st_ino, fmt))


def _entry_stat(
    entry: os.DirEntry[str], roots: list[str], stack: list[str], refused: list[Refusal]
) -> os.stat_result | None:
    """The entry's stat when it may be a dataset file; folders go onto `stack`, symlinks leaving
    the roots into `refused`."""
    if entry.is_symlink():
        target = os.path.realpath(entry.path)
        if not any(under(target, root) for root in roots):
            refused.append(Refusal(entry.path, f"a symlink to {target}, outside the dataset roots"))
            return None
        info = os.stat(entry.path)
        return None if stat.S_ISDIR(info.st_mode) else info
    if entry.is_dir(follow_symlinks=False):
        stack.append(entry.path)
        return None
    return entry.stat(follow_symlinks=False)


def _is_text(name: str) -> bool:
    """Whether the name is text: one that is not UTF-8 reaches Python with surrogates (PEP 383),
    which no database column can hold."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
