"""security: the version's files hash to the registry's checksums, none is a pickle, and the
deployment's endpoint refuses a request without credentials."""

from __future__ import annotations

import posixpath
from typing import Any

import httpx

from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification import web
from apps.deployments.verification.base import Context, Outcome, one_line
from apps.models import discovery
from apps.models.domain.formats import OTHER_PICKLE_SUFFIXES, FileFormat, ModelFormat
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.base import configured_roots
from apps.models.scanning.checksums import file_path, sha256_of

NAME = CheckName.SECURITY
DESCRIPTION = "File checksums match the registry's, no pickle files, the endpoint requires credentials"
# Every file is hashed again: about 1 GB/s from a warm page cache, less from disk.
TIMEOUT_S = 600.0
_REQUEST_TIMEOUT_S = 10.0


def run(ctx: Context) -> Outcome:
    files = list(ctx.version.files.order_by("path"))
    problems = [*pickles(ctx.version, files), *checksum_problems(ctx.version, files)]
    refusal, status = _unauthenticated(ctx)
    if refusal:
        problems.append(refusal)
    evidence: dict[str, Any] = {"files": len(files), "unauthenticated_status": status}
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Outcome(CheckStatus.FAIL, one_line(problems[0] + more), {**evidence, "problems": problems})
    return Outcome(
        CheckStatus.PASS,
        f"{len(files)} file(s) match their checksums, none is a pickle; without credentials the "
        f"endpoint answers {status}",
        evidence,
    )


def pickles(version: ModelVersion, files: list[ModelFile]) -> list[str]:
    """A line per pickle-based file of the version (PyTorch checkpoints, .pkl/.pickle)."""
    found = [
        f"{f.path} is a pickle (code runs when it is loaded)"
        for f in files
        if f.format == FileFormat.PYTORCH or posixpath.splitext(f.path.lower())[1] in OTHER_PICKLE_SUFFIXES
    ]
    if not found and version.format == ModelFormat.PYTORCH:
        found.append(f"{version} is in the pickle-based PyTorch format")
    return found


def checksum_problems(version: ModelVersion, files: list[ModelFile]) -> list[str]:
    """A line per file whose bytes on disk do not hash to the checksum the registry recorded."""
    if not files:
        return [f"{version} has no files on record"]
    roots = configured_roots()
    problems = []
    for f in files:
        path = file_path(version, f)
        if not f.sha256:
            problems.append(f"{f.path} has no checksum on record (not hashed by a scan yet)")
        elif not discovery.inside(path, roots):
            problems.append(f"{f.path} lies outside the model roots")
        else:
            try:
                digest = sha256_of(path)
            except OSError as exc:
                problems.append(f"{f.path} cannot be read: {exc.strerror or exc}")
                continue
            if digest != f.sha256:
                problems.append(f"{f.path} hashes to {digest[:12]}…, the registry has {f.sha256[:12]}…")
    return problems


def _unauthenticated(ctx: Context) -> tuple[str | None, int | None]:
    """What is wrong with the endpoint's answer to a call without credentials, and its status."""
    path = web.infer_path(ctx.deployment.name)
    body = {"task": "generate", "input": {"prompt": "Hello"}, "release": ctx.release.pk}
    try:
        response = web.post(path, body, timeout_s=_REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return web.unreachable(exc), None
    if response.status_code in (401, 403):
        return None, response.status_code
    status = response.status_code
    return f"without credentials POST {path} answered {status}, not 401 or 403", status
