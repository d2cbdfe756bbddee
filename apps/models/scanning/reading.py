"""Reading one version candidate's files the way a scan does: stat, header, the files its headers
refer to, and the version they describe. The scan (run.py) applies this to every candidate it
walks; registering a job's output (register.py) to the one folder or file it was given, so that
a later scan finds that version's files unchanged."""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.core.domain.text import printable
from apps.models import discovery, formats
from apps.models.discovery import Candidate, FoundFile
from apps.models.domain.formats import FileFormat, ModelFormat
from apps.models.domain.headers import FileHeader
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.base import ERRORS_MAX
from apps.models.scanning.describe import describe, header_json


@dataclass(slots=True)
class KnownFile:
    """A ModelFile row as a scan's fingerprint query loads it."""

    pk: int
    path: str
    fingerprint: str
    checksummed: str
    size: int


class CandidateReader:
    """Reads candidates' files under `roots`, counting what it found and keeping the errors."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = list(roots)
        self.read_roots = [Path(root) for root in self.roots]
        self.counts = {"new": 0, "changed": 0, "unchanged": 0, "removed": 0, "failed": 0}
        self.errors: list[dict[str, str]] = []
        self.to_hash: dict[int, int] = {}  # file id -> size
        self.read_ahead: dict[str, FileHeader] = {}  # by absolute path: headers read before their batch

    def read_candidate(
        self,
        candidate: Candidate,
        version_id: int | None,
        known: dict[str, KnownFile],
        new: list[ModelFile],
        changed: list[ModelFile],
    ) -> dict[str, FoundFile]:
        """The candidate's files now: its own, those its version reached through references last
        time (`known`) that still exist, and those its fresh headers refer to. New and changed ones
        are appended to `new` and `changed` with their headers read; unchanged ones are not read."""
        files = {f.path: f for f in candidate.files}
        # Files the version reached through references last time stay while they exist.
        data = {path for path in known if path not in files}
        for path in data:
            if (extra := self.stat(candidate.base, path)) is not None:
                files[path] = extra
        headers = self.compare(version_id, candidate.base, files, known, data, new, changed)
        for ref in sorted(_references(headers) - files.keys()):
            if (extra := self.reference(candidate.base, ref)) is not None:
                files[ref] = extra
                data.add(ref)
                self.compare(version_id, candidate.base, {ref: extra}, known, data, new, changed)
        return files

    def compare(
        self,
        version_id: int | None,
        base: str,
        files: dict[str, FoundFile],
        known: dict[str, KnownFile],
        data: set[str],
        new: list[ModelFile],
        changed: list[ModelFile],
    ) -> dict[str, FileHeader]:
        """Sort files into unchanged (not read) and new or changed (header read); the fresh headers."""
        headers: dict[str, FileHeader] = {}
        for path, found in files.items():
            row = known.get(path)
            if row is not None and row.fingerprint == found.fingerprint:
                self.counts["unchanged"] += 1
                if row.checksummed != found.fingerprint:
                    self.to_hash[row.pk] = row.size
                continue
            header = None if path in data else self.read(base, found)
            if header is not None:
                headers[path] = header
            fields = file_fields(found, header)
            if row is None:
                self.counts["new"] += 1
                new.append(ModelFile(version_id=version_id, path=path, **fields))
            else:
                self.counts["changed"] += 1
                changed.append(ModelFile(pk=row.pk, version_id=version_id, path=path, **fields))
        return headers

    def read(self, base: str, found: FoundFile) -> FileHeader | None:
        if found.format == FileFormat.OTHER:
            return None
        ahead = self.read_ahead.pop(os.path.join(base, found.path), None)
        return ahead if ahead is not None else self.read_now(base, found)

    def read_now(self, base: str, found: FoundFile) -> FileHeader:
        header = formats.read_header(Path(base, found.path), roots=self.read_roots)
        if header.failed:
            self.counts["failed"] += 1
            first = next(check for check in header.checks if check.status == "fail")
            self.error(os.path.join(base, found.path), f"{first.check}: {first.detail}")
        return header

    def stat(self, base: str, path: str) -> FoundFile | None:
        full = os.path.normpath(os.path.join(base, path))
        if not discovery.inside(full, self.roots):
            return None
        try:
            info = os.stat(full)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return FoundFile(path, info.st_size, info.st_mtime_ns, info.st_ino, FileFormat.OTHER)

    def reference(self, base: str, ref: str) -> FoundFile | None:
        full = os.path.normpath(os.path.join(base, ref))
        if not discovery.inside(full, self.roots):
            self.counts["failed"] += 1
            self.error(full, "a file a header refers to lies outside the model roots; not followed")
            return None
        return self.stat(base, ref)  # a missing one is the reader's check to report

    def error(self, path: str, error: str) -> None:
        # `path` stays as the disk has it (the API adds a printable copy); the sentence, which may
        # quote a name (a symlink's target), has its control characters made visible.
        if len(self.errors) < ERRORS_MAX:
            self.errors.append({"path": path, "error": printable(error)})


def new_version(candidate: Candidate, files: list[ModelFile], *, created_by: Any = None) -> ModelVersion:
    """An unsaved v1 for a new candidate, described from the headers just read (all its files are
    new); its model and number are the caller's to set."""
    version = ModelVersion(
        number=1,
        format=_first_format(candidate),
        root=candidate.root,
        path=candidate.abspath,
        created_by=created_by,
    )
    folder = candidate.base if candidate.folder else None
    describe(version, folder, [(f.path, f.size_bytes, f.header) for f in files])
    return version


def file_fields(found: FoundFile, header: FileHeader | None) -> dict[str, Any]:
    return {
        "size_bytes": found.size,
        "mtime": dt.datetime.fromtimestamp(found.mtime_ns / 1e9, tz=dt.UTC),
        "mtime_ns": found.mtime_ns,
        "inode": found.inode,
        "format": header.format if header is not None else found.format,
        "header": header_json(header) if header is not None else {},
        "sha256": "",
        "checksummed": "",
    }


def _references(headers: dict[str, FileHeader]) -> set[str]:
    return {os.path.normpath(ref) for header in headers.values() for ref in header.references}


def _first_format(candidate: Candidate) -> str:
    """A placeholder until the headers are read: what the file names suggest."""
    if candidate.folder and any(f.path == "config.json" for f in candidate.files):
        return ModelFormat.HF
    weights = [f.format for f in candidate.files if f.format not in (FileFormat.CONFIG, FileFormat.OTHER)]
    return weights[0] if weights else ModelFormat.SAFETENSORS
