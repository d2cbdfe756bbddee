"""Validating a dataset: its file read row by row with the domain's rules, and the verdict written.

Streaming: rows are parsed one at a time and only the first ERRORS_KEPT bad rows are kept, so a
file of any size is read in constant memory. The sha256 is of the bytes as they were read, and
the fingerprint of the file as it was opened, so a file that changes meanwhile is validated again
by the next scan.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from django.utils import timezone

from apps.core import audit
from apps.core.transitions import transition
from apps.jobs.datasets.files import DatasetFile, Unreadable, lines, open_dataset
from apps.jobs.domain.datasets import FILE_ROW, DatasetFormat, RowProblem, Tally, parse_lines
from apps.jobs.domain.states import DATASET, DatasetState
from apps.jobs.models import Dataset
from apps.models.discovery import fingerprint


@dataclass(frozen=True, slots=True)
class FileReport:
    tally: Tally
    sha256: str = ""
    size: int = 0
    fingerprint: str = ""


def file_report(dataset: DatasetFile, *, fmt: DatasetFormat) -> FileReport:
    """What the dataset's file holds, row by row; a file that may not or cannot be read is one
    problem (row 0)."""
    try:
        with open_dataset(dataset) as handle:
            info = os.fstat(handle.fileno())
            hasher = hashlib.sha256()
            tally = Tally()
            for item in parse_lines(lines(handle, hasher=hasher), fmt=fmt):
                tally.add(item)
    except Unreadable as why:
        return _refused(str(why))
    except OSError as error:
        return _refused(f"the file could not be read: {error.strerror or error}")
    return FileReport(
        tally=tally.finish(),
        sha256=hasher.hexdigest(),
        size=info.st_size,
        fingerprint=fingerprint(info.st_size, info.st_mtime_ns, info.st_ino),
    )


def _refused(why: str) -> FileReport:
    tally = Tally()
    tally.problem(RowProblem(FILE_ROW, why))
    return FileReport(tally=tally)


def dataset_validate(*, dataset: Dataset) -> Dataset:
    """Read the dataset's file and record the verdict: valid or invalid, rows, shape, sha256, the
    first bad rows with their numbers and how many there were. Safe to run twice."""
    report = file_report(dataset, fmt=DatasetFormat(dataset.format))
    tally = report.tally
    old = dataset.state
    dst = DatasetState.VALID if tally.valid else DatasetState.INVALID
    changes = {
        "rows": tally.rows,
        "shape": tally.shape.value if tally.shape else "",
        "errors": [problem.as_json() for problem in tally.errors],
        "error_count": tally.error_count,
        "sha256": report.sha256,
        "fingerprint": report.fingerprint,
        "validated_at": timezone.now(),
    }
    if report.fingerprint:
        changes["size_bytes"] = report.size
    transition(dataset, dst, machine=DATASET, **changes)
    audit.record("validation", dataset, changes={"state": [old, dst.value]})
    return dataset
