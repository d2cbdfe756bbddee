"""Version validation (worker side): a report from the files' stored headers, checksums and
paths, and whether the files are still on disk as the last scan read them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from apps.core.domain.text import counted
from apps.models import discovery, services
from apps.models.domain import validation
from apps.models.domain.headers import Check
from apps.models.domain.states import ValidationState
from apps.models.formats import hf
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.base import configured_roots
from apps.models.scanning.checksums import file_path
from apps.models.scanning.describe import header_from_json


def version_validate(*, version: ModelVersion) -> str:
    """Check the version from its files' stored headers, checksums and paths; its new state."""
    version.refresh_from_db()
    # VALIDATING already: a check whose worker died, or a duplicate; both may simply run again.
    started = version.validation_state == ValidationState.VALIDATING
    if not started and not services.version_validation_start(version=version):
        return version.validation_state
    files = list(version.files.all())
    roots = configured_roots()
    headers = {f.path: header_from_json(f.header, f.format) for f in files}
    escaped = [f.path for f in files if not discovery.inside(file_path(version, f), roots)]
    checksums = {
        f.path: f.sha256 if f.sha256 and f.checksummed == _fingerprint_of(f) else None for f in files
    }
    config: dict[str, Any] = {}
    folder_checks: tuple[Check, ...] = ()
    if os.path.isdir(version.path):
        config, folder_checks, _ = hf.read_folder(Path(version.path), sorted(headers))
    report = validation.version_report(
        files=headers, folder_checks=folder_checks, checksums=checksums, escaped=escaped, config=config
    )
    report.append(_on_disk(version, [f for f in files if f.path not in escaped]).as_dict())
    digest = _version_digest(version, files, checksums)
    if digest and digest != version.sha256:
        ModelVersion.objects.filter(pk=version.pk).update(sha256=digest)
    services.version_validation_finish(version=version, problems=validation.problems(report), report=report)
    return version.validation_state


def _on_disk(version: ModelVersion, files: list[ModelFile]) -> Check:
    """Whether the files are still there as the last scan read them (the report is about those)."""
    if not files:
        return Check("files_present", "fail", f"no files are left at {version.path}")
    missing, moved = [], []
    for file in files:
        try:
            info = os.stat(file_path(version, file))
        except OSError:
            missing.append(file.path)
            continue
        if discovery.fingerprint(info.st_size, info.st_mtime_ns, info.st_ino) != _fingerprint_of(file):
            moved.append(file.path)
    if missing:
        return Check("files_present", "fail", f"gone since the last scan: {', '.join(missing[:5])}")
    if moved:
        detail = f"changed since the last scan, which will read them again: {', '.join(moved[:5])}"
        return Check("files_present", "warn", detail)
    return Check("files_present", "pass", f"{counted(len(files), 'file')}, unchanged since the last scan")


def _fingerprint_of(file: ModelFile) -> str:
    return discovery.fingerprint(file.size_bytes, file.mtime_ns or 0, file.inode or 0)


def _version_digest(version: ModelVersion, files: list[ModelFile], checksums: dict[str, str | None]) -> str:
    """The single file's sha256, or one over the sorted "sha256  path" lines; "" until all are hashed."""
    if not files or any(checksums[f.path] is None for f in files):
        return ""
    if len(files) == 1:
        return files[0].sha256
    lines = "".join(f"{checksums[path]}  {path}\n" for path in sorted(checksums))
    return hashlib.sha256(lines.encode()).hexdigest()
