"""What every format reader returns: a file's header, as checks plus a small summary.

Pure Python, no Django: the readers run inside scans and validation tasks, and their
tests feed them hostile files without a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of a validation report: a named check, its outcome and why."""

    check: str
    status: Status
    detail: str
    file: str = ""

    def as_dict(self) -> dict[str, str]:
        """The form ModelVersion.validation_report stores."""
        return {"check": self.check, "status": self.status, "detail": self.detail, "file": self.file}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class FileHeader:
    """What reading one file's header found; `format` is a FileFormat value."""

    format: str
    metadata: dict[str, Any]
    tensor_count: int
    params_count: int | None
    weights_bytes: int
    dtypes: dict[str, int]
    checks: tuple[Check, ...]
    # Files this one points at (weight shards, ONNX external data), relative to its folder.
    references: tuple[str, ...] = ()
    tensors: tuple[TensorInfo, ...] = ()

    @property
    def failed(self) -> bool:
        return any(check.status == "fail" for check in self.checks)


class FormatError(Exception):
    """A file breaks its format's rules; read_header turns it into a fail check."""

    def __init__(self, detail: str, check: str = "readable") -> None:
        super().__init__(detail)
        self.detail = detail
        self.check = check


def inside_roots(path: Path, roots: Sequence[Path]) -> bool:
    """Whether the path, symlinks followed, lies under one of the (resolved) roots."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return False
    for root in roots:
        try:
            if real.is_relative_to(Path(root).resolve()):
                return True
        except (OSError, RuntimeError):
            continue
    return False
