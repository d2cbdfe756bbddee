"""Header readers for model files: what a file is, and what its header says.

`detect` names a file's format from its name and first bytes; `read_header` reads only the
header, with bounded memory, and never raises for a broken or hostile file: every problem
becomes a fail check. Pickle-based files are scanned, never unpickled. No Django here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.models.domain.formats import OTHER_PICKLE_SUFFIXES, FileFormat, format_by_name
from apps.models.domain.headers import Check, FileHeader
from apps.models.formats import gguf, onnx, pickles, safetensors
from apps.models.formats.base import GGUF_MAGIC, FormatError, inside_roots, magic

__all__ = ["detect", "read_header"]


def _named(path: Path) -> FileFormat:
    """The file's format by its name, as the readers take it: other pickles are read as pickles."""
    fmt = format_by_name(path.name)
    if fmt == FileFormat.OTHER and path.suffix.lower() in OTHER_PICKLE_SUFFIXES:
        return FileFormat.PYTORCH
    return fmt


def detect(path: Path) -> FileFormat:
    """The file's format, from its name, and from its magic bytes where the name is ambiguous."""
    path = Path(path)
    fmt = _named(path)
    if fmt != FileFormat.PYTORCH:
        return fmt
    # Some tools write GGUF files as .bin; those go to the GGUF reader, not the pickle scan.
    # Only these ambiguous names cost a read, so a walk over other files stays stat-only.
    return FileFormat.GGUF if magic(path) == GGUF_MAGIC else FileFormat.PYTORCH


def _header(
    fmt: FileFormat,
    checks: tuple[Check, ...] = (),
    *,
    metadata: dict[str, Any] | None = None,
    references: tuple[str, ...] = (),
) -> FileHeader:
    """A header without tensors: a refused file, a config file, anything not weights."""
    return FileHeader(
        format=fmt.value,
        metadata=metadata or {},
        tensor_count=0,
        params_count=None,
        weights_bytes=0,
        dtypes={},
        checks=checks,
        references=references,
    )


def _failed(fmt: FileFormat, check: str, detail: str) -> FileHeader:
    return _header(fmt, (Check(check, "fail", detail),))


def _dispatch(path: Path, fmt: FileFormat, roots: Sequence[Path]) -> FileHeader:
    match fmt:
        case FileFormat.SAFETENSORS:
            return safetensors.read(path)
        case FileFormat.GGUF:
            return gguf.read(path)
        case FileFormat.ONNX:
            return onnx.read(path, roots=roots)
        case FileFormat.PYTORCH:
            return pickles.read(path)
        case FileFormat.CONFIG if path.name.endswith(".index.json"):
            # Shard indexes (safetensors or pytorch) name the files they need; other config
            # files are judged per folder, by hf.read_folder.
            metadata, checks, shards = safetensors.read_index(path, roots=roots)
            return _header(fmt, checks, metadata=metadata, references=shards)
    return _header(fmt)


def read_header(path: Path, *, roots: Sequence[Path]) -> FileHeader:
    """Read one file's header; a bad, hostile or escaping file gives fail checks, never an exception."""
    path = Path(path)
    if not inside_roots(path, roots):
        # Named from its path alone: not even its magic bytes are read.
        return _failed(_named(path), "inside_roots", "the file resolves outside the model roots; not read")
    fmt = detect(path)
    try:
        return _dispatch(path, fmt, roots)
    except FormatError as error:
        return _failed(fmt, error.check, error.detail)
    except OSError as error:
        return _failed(fmt, "readable", f"could not read the file: {error.strerror or error}")
    # A reader bug that a hostile file found (deep nesting, a codec edge) must cost one
    # file, not the whole scan.
    except Exception as error:
        return _failed(fmt, "readable", f"the header could not be parsed ({type(error).__name__})")
