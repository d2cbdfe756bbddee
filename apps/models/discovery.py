"""Walking the model roots: which files exist, and how they group into model versions.

Pure filesystem work, no Django and no reads beyond stat: a scan of thousands of unchanged
files must cost only the walk, so what a file *is* comes from its name here and from its
header later (scanning/run.py). Nothing outside the roots is followed or listed: a symlink that
resolves elsewhere is refused with a reason.

Grouping: a folder holding config.json, adapter_config.json or a shard index (or the shards
of one sharded set) is one version with every file at that level; anywhere else each weight
file is its own version, an .onnx together with the external data files named after it
(scanning/run.py adds the ones its header names otherwise). A weight file beside an .onnx is
its own candidate too: only the ONNX header can say it is that model's external data (exporters
write it as .bin), so the scan drops the candidates an ONNX names (`onnx_to_read` says which
ONNX files it must ask), and everything else is reported as itself.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from apps.models.domain import naming
from apps.models.domain.formats import WEIGHT_FORMATS, FileFormat, format_by_name

_FOLDER_MARKERS = frozenset({"config.json", "adapter_config.json"})
# model-00001-of-00004.safetensors, llama-7b-00002-of-00003.gguf, pytorch_model-00001-of-00002.bin
_SHARD = re.compile(r"(?P<set>.+)-\d{5}-of-(?P<total>\d{5})\.(?:safetensors|gguf|bin)", re.IGNORECASE)
# Stems that say nothing about the model: such a file is named after its folder instead.
_GENERIC_STEMS = frozenset(
    {"model", "pytorch_model", "weights", "adapter_model", "consolidated", "ggml-model"}
)
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class FoundFile:
    """One regular file as stat saw it; `path` is relative to its version's base folder."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    format: FileFormat

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.size, self.mtime_ns, self.inode)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model version found on disk: a folder, or a single weight file (plus its data files)."""

    root: str
    path: str  # relative to root; "" is the root folder itself
    folder: bool
    name: str  # a valid registered-model name
    files: tuple[FoundFile, ...]

    @property
    def abspath(self) -> str:
        return os.path.join(self.root, self.path) if self.path else self.root

    @property
    def base(self) -> str:
        """The folder the files' paths are relative to."""
        return self.abspath if self.folder else os.path.dirname(self.abspath)


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str  # absolute
    reason: str


@dataclass(frozen=True, slots=True)
class Walk:
    candidates: tuple[Candidate, ...]
    refused: tuple[Refusal, ...]  # symlinks that leave the roots
    unreadable: tuple[Refusal, ...]  # folders and files stat or scandir could not take
    roots: tuple[str, ...]  # the resolved roots that were walked
    missing_roots: tuple[str, ...]  # roots that are not there or not folders

    @property
    def file_count(self) -> int:
        return sum(len(candidate.files) for candidate in self.candidates)


def fingerprint(size: int, mtime_ns: int, inode: int) -> str:
    """What tells a re-scan that a file is unchanged, and a checksum that it is current."""
    return f"{size}:{mtime_ns}:{inode}"


def model_name(raw: str) -> str:
    """`raw` (a folder name or file stem) made into a valid registered-model name."""
    name = _UNSAFE_NAME_CHARS.sub("-", raw).lstrip("._-")[: naming.NAME_MAX].rstrip("._-")
    return name if name and naming.name_problem(name) is None else "model"


def version_base(path: str) -> str:
    """The folder a stored version's file paths are relative to (its folder, or its file's folder)."""
    return path if os.path.isdir(path) else os.path.dirname(path)


def resolve_roots(roots: Iterable[str | Path]) -> list[str]:
    """The roots resolved, without duplicates or roots nested in another (walked once, by the outer)."""
    resolved = sorted({os.path.realpath(root) for root in roots})
    kept: list[str] = []
    for root in resolved:
        if not any(under(root, outer) for outer in kept):
            kept.append(root)
    return kept


def inside(path: str, roots: Sequence[str]) -> bool:
    """Whether `path`, symlinks followed, lies under one of the resolved roots."""
    real = os.path.realpath(path)
    return any(under(real, root) for root in roots)


def under(path: str, folder: str) -> bool:
    """Whether the (already resolved) `path` is `folder` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk(roots: Iterable[str | Path]) -> Walk:
    """Every version candidate under the roots, and what was refused or unreadable on the way."""
    resolved = resolve_roots(roots)
    candidates: list[Candidate] = []
    refused: list[Refusal] = []
    unreadable: list[Refusal] = []
    missing: list[str] = []
    for root in resolved:
        if not os.path.isdir(root):
            missing.append(root)
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            files = _scan_folder(folder, resolved, stack, refused, unreadable)
            candidates.extend(_group(root, folder, files))
    walked = tuple(root for root in resolved if root not in missing)
    return Walk(
        candidates=tuple(sorted(candidates, key=lambda c: (c.root, c.path))),
        refused=tuple(refused),
        unreadable=tuple(unreadable),
        roots=walked,
        missing_roots=tuple(missing),
    )


def candidate_at(path: str, roots: Iterable[str | Path]) -> Candidate | Refusal:
    """The candidate a walk of `roots` would find at `path` (a version folder or a weight file on
    its own), or why a walk would find none there."""
    resolved = resolve_roots(roots)
    real = os.path.realpath(path)
    root = next((root for root in resolved if under(real, root)), None)
    if root is None:
        return Refusal(path, f"not under a model root ({', '.join(resolved) or 'none configured'})")
    if any(part.startswith(".") for part in Path(os.path.relpath(real, root)).parts if part != "."):
        return Refusal(path, "a hidden name (starting with '.') is in the path: scans skip it")
    if not os.path.exists(real):
        return Refusal(path, "there is no such folder or file")
    folder = real if os.path.isdir(real) else os.path.dirname(real)
    refused: list[Refusal] = []
    unreadable: list[Refusal] = []
    files = _scan_folder(folder, resolved, [], refused, unreadable)
    if problem := next((r for r in (*refused, *unreadable) if r.path in (folder, real)), None):
        return Refusal(path, problem.reason)
    found = next((c for c in _group(root, folder, files) if c.abspath == real), None)
    if found is not None:
        return found
    if os.path.isdir(real):
        return Refusal(path, "not a model folder: no config.json, adapter_config.json or shard index in it")
    return Refusal(path, "not a model of its own: a scan reads it as a file of its folder's model")


def _scan_folder(
    folder: str, roots: Sequence[str], stack: list[str], refused: list[Refusal], unreadable: list[Refusal]
) -> dict[str, os.stat_result]:
    """The regular files directly in `folder` (by name); subfolders are pushed onto `stack`."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        unreadable.append(Refusal(folder, f"the folder could not be listed: {error.strerror or error}"))
        return {}
    files: dict[str, os.stat_result] = {}
    for entry in entries:
        if entry.name.startswith("."):  # .git, .cache, editors' temporary files
            continue
        if not _is_text(entry.name):
            unreadable.append(
                Refusal(_undecoded_escaped(entry.path), "the name is not UTF-8 text; rename it")
            )
            continue
        try:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not any(under(target, root) for root in roots):
                    reason = f"a symlink to {_undecoded_escaped(target)}, outside the model roots"
                    refused.append(Refusal(entry.path, reason))
                    continue
                info = os.stat(entry.path)
                if stat.S_ISDIR(info.st_mode):
                    continue  # its target lies inside the roots and is walked where it is
            elif entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
                continue
            else:
                info = entry.stat(follow_symlinks=False)
        except OSError as error:
            unreadable.append(Refusal(entry.path, error.strerror or str(error)))
            continue
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or a device would block or never end when read.
            unreadable.append(Refusal(entry.path, "not a regular file"))
            continue
        files[entry.name] = info
    return files


def _is_text(name: str) -> bool:
    """Whether the name is text: one that is not UTF-8 reaches Python with surrogates (PEP 383),
    which no database column or JSON document can hold."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _undecoded_escaped(path: str) -> str:
    """`path` with the bytes of its names that are not UTF-8 written as escapes (b"\\xff" as "\\xff")."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _found(name: str, info: os.stat_result) -> FoundFile:
    return FoundFile(
        path=name,
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        inode=info.st_ino,
        format=format_by_name(name),
    )


def _is_version_folder(names: Iterable[str]) -> bool:
    shard_sets: Counter[tuple[str, str]] = Counter()
    for name in names:
        lower = name.lower()
        if lower in _FOLDER_MARKERS or lower.endswith(".index.json"):
            return True
        if match := _SHARD.fullmatch(lower):
            shard_sets[(match["set"], match["total"])] += 1
    return any(count > 1 for count in shard_sets.values())


def _group(root: str, folder: str, files: dict[str, os.stat_result]) -> list[Candidate]:
    rel = os.path.relpath(folder, root) if folder != root else ""
    if _is_version_folder(files):
        found = tuple(_found(name, info) for name, info in files.items())
        return [Candidate(root, rel, True, _folder_name(folder), found)]
    candidates = []
    for name, info in files.items():
        fmt = format_by_name(name)
        if fmt not in WEIGHT_FORMATS:
            continue
        found = [_found(name, info)]
        if fmt == FileFormat.ONNX:
            found += [_found(data, files[data]) for data in _onnx_data_names(name) if data in files]
        stem = os.path.splitext(name)[0]
        shard = _SHARD.fullmatch(name)
        raw = shard["set"] if shard else stem
        label = _folder_name(folder) if raw.lower() in _GENERIC_STEMS else raw
        path = os.path.join(rel, name) if rel else name
        candidates.append(Candidate(root, path, False, model_name(label), tuple(found)))
    return candidates


def onnx_to_read(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The single-file ONNX candidates that may name another candidate's weight file as their
    external data (one in their folder or below it); only their header can tell."""
    holding: set[str] = set()  # folders with a non-ONNX weight file candidate in them or below
    for candidate in candidates:
        if candidate.folder or candidate.files[0].format == FileFormat.ONNX:
            continue
        folder = os.path.dirname(candidate.abspath)
        while folder not in holding and under(folder, candidate.root):
            holding.add(folder)
            folder = os.path.dirname(folder)
    return [
        c
        for c in candidates
        if not c.folder and c.files[0].format == FileFormat.ONNX and os.path.dirname(c.abspath) in holding
    ]


def _onnx_data_names(name: str) -> tuple[str, ...]:
    """The names exporters give an ONNX file's external data (torch: model.onnx.data, optimum: _data)."""
    stem = os.path.splitext(name)[0]
    return (f"{name}.data", f"{name}_data", f"{stem}.data")


def _folder_name(folder: str) -> str:
    parts = Path(folder).parts
    # A Hugging Face cache keeps models--org--name/snapshots/<commit>/: the commit names nothing.
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return model_name(parts[-3].split("--")[-1])
    return model_name(parts[-1] if parts else "model")
