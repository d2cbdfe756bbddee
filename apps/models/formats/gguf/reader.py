"""The walk of a GGUF container: preamble, metadata key/values, tensor infos, data offsets.

Each stage adds its checks; the first fault that leaves the rest of the header unreadable
ends the walk with a fail check, and the header returned says what was read before it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apps.models.domain import params
from apps.models.domain.chat_template import MAX_TEMPLATE_CHARS, template_problem
from apps.models.domain.formats import FileFormat
from apps.models.domain.headers import Check, FileHeader
from apps.models.formats.base import FormatError
from apps.models.formats.gguf.source import MAX_STRING, U64, Source
from apps.models.formats.gguf.summary import (
    CHAT_TEMPLATE,
    KEPT_GENERAL,
    KEPT_SUFFIXES,
    split_siblings,
    summarise,
)
from apps.models.formats.gguf.tables import STRING
from apps.models.formats.gguf.tensors import INT64_MAX, Tensors
from apps.models.formats.gguf.values import SHOWN_STRING, read_value

MAX_TENSORS = 1_000_000
MAX_KEYS = 100_000
MAX_KEY = 64 << 10
MAX_DIMS = 8
DEFAULT_ALIGNMENT = 32
_KEPT_VALUES = 256
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_COUNTS = struct.Struct("<QQ")
# The smallest a key/value (empty key, u32 type, one byte) and a tensor info can be.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8


def read(path: Path) -> FileHeader:
    """Read a GGUF file's header; a broken or hostile file gives fail checks, never an exception."""
    try:
        with open(path, "rb") as handle:
            parser = _Parser(Source(handle, os.fstat(handle.fileno()).st_size), Path(path).name)
            return parser.parse()
    except OSError as error:
        return _Parser.unreadable(f"could not read the file: {error.strerror or error}")


class _Parser:
    """One read of one file: the stages in order, and what each found."""

    def __init__(self, source: Source, name: str) -> None:
        self.src = source
        self.name = name
        self.checks: list[Check] = []
        self.version = 0
        self.tensor_count = 0
        self.kv_count = 0
        self.values: dict[str, Any] = {}
        self.chat_templates: dict[str, int] = {}
        self.template_problems: dict[str, str] = {}
        self.alignment = DEFAULT_ALIGNMENT
        self.tensors = Tensors()
        self.tensors_read = 0

    @staticmethod
    def unreadable(detail: str) -> FileHeader:
        return FileHeader(
            format=FileFormat.GGUF.value,
            metadata={},
            tensor_count=0,
            params_count=None,
            weights_bytes=0,
            dtypes={},
            checks=(Check("readable", "fail", detail),),
        )

    def parse(self) -> FileHeader:
        stages: tuple[Callable[[], None], ...] = (
            self._preamble,
            self._metadata,
            self._tensor_infos,
            self._offsets,
        )
        try:
            for stage in stages:
                stage()
        except FormatError as error:
            self.checks.append(Check(error.check, "fail", error.detail))
        except (struct.error, ValueError, OverflowError) as error:
            self.checks.append(Check(self.src.stage, "fail", f"malformed header ({error})"))
        return self._header()

    def _preamble(self) -> None:
        src = self.src
        magic = src.take(4, "the magic bytes")
        if magic != b"GGUF":
            raise FormatError(f"not a GGUF file: it starts with {magic!r}, not b'GGUF'", "gguf_header")
        (version,) = src.unpack(_U32, "the version")
        if version not in (2, 3):
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if swapped in (2, 3):
                raise FormatError(f"big-endian GGUF (version {swapped}) is not supported", "gguf_header")
            if version == 1:
                raise FormatError("GGUF version 1 (32-bit counts) is not supported", "gguf_header")
            raise FormatError(f"unknown GGUF version {version}; versions 2 and 3 are read", "gguf_header")
        self.version = version
        self.checks.append(Check("gguf_header", "pass", f"GGUF version {version}, little-endian"))
        src.stage = "gguf_counts"
        tensor_count, kv_count = src.unpack(_COUNTS, "the tensor and key/value counts")
        if tensor_count > MAX_TENSORS:
            raise FormatError(f"claims {tensor_count:,} tensors; the cap is {MAX_TENSORS:,}", "gguf_counts")
        if kv_count > MAX_KEYS:
            raise FormatError(f"claims {kv_count:,} metadata keys; the cap is {MAX_KEYS:,}", "gguf_counts")
        least = tensor_count * _MIN_TENSOR_INFO_BYTES + kv_count * _MIN_KV_BYTES
        if least > src.left:
            raise FormatError(
                f"claims {tensor_count:,} tensors and {kv_count:,} keys, which need at least "
                f"{least:,} bytes, but only {src.left:,} are left",
                "gguf_counts",
            )
        self.tensor_count, self.kv_count = tensor_count, kv_count
        self.checks.append(Check("gguf_counts", "pass", f"{tensor_count:,} tensors, {kv_count:,} keys"))

    def _metadata(self) -> None:
        self.src.stage = "gguf_metadata"
        keys: set[int] = set()
        for index in range(self.kv_count):
            key = self.src.string(MAX_KEY, f"key #{index}")
            if hash(key) in keys:
                raise FormatError(f"metadata key {key[:SHOWN_STRING]!r} appears twice", "gguf_metadata")
            keys.add(hash(key))
            (vtype,) = self.src.unpack(_U32, f"the type of {key[:SHOWN_STRING]!r}")
            if key == CHAT_TEMPLATE or key.startswith(CHAT_TEMPLATE + "."):
                self._chat_template(key, vtype)
                continue
            keep = key in KEPT_GENERAL or (len(self.values) < _KEPT_VALUES and key.endswith(KEPT_SUFFIXES))
            value = read_value(self.src, vtype, f"the value of {key[:SHOWN_STRING]!r}", depth=0, keep=keep)
            if keep:
                self.values[key] = value
        self.checks.append(
            Check("gguf_metadata", "pass", f"{self.kv_count:,} keys read; counts and lengths within the caps")
        )
        self._alignment()

    def _chat_template(self, key: str, vtype: int) -> None:
        """Reads the template (llama.cpp's runtimes render it) and keeps only its length and,
        where MOC would refuse to render it, why; the text itself is never kept."""
        if vtype != STRING:
            raise FormatError(f"{key!r} is not a string", "gguf_metadata")
        what = f"the value of {key!r}"
        length = self.src.length(MAX_STRING, what)
        self.chat_templates[key] = length
        if length > MAX_TEMPLATE_CHARS * 4:  # past any UTF-8 spelling of MAX_TEMPLATE_CHARS
            self.src.skip(length, what)
            self.template_problems[key] = f"the chat template is {length:,} bytes, too long to be one"
            return
        try:
            problem = template_problem(self.src.take(length, what).decode("utf-8"))
        except UnicodeDecodeError:
            problem = "the chat template is not UTF-8 text"
        if problem is not None:
            self.template_problems[key] = problem

    def _alignment(self) -> None:
        value = self.values.get("general.alignment")
        if value is None:
            self.checks.append(Check("gguf_alignment", "pass", f"default alignment {DEFAULT_ALIGNMENT}"))
            return
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
            raise FormatError(f"general.alignment {value!r} is not a power of two", "gguf_alignment")
        self.alignment = value
        self.checks.append(Check("gguf_alignment", "pass", f"alignment {value}"))

    def _tensor_infos(self) -> None:
        src = self.src
        src.stage = "gguf_tensor_infos"
        for index in range(self.tensor_count):
            name = src.string(MAX_KEY, f"the name of tensor #{index}")
            (n_dims,) = src.unpack(_U32, f"the dimension count of {name[:SHOWN_STRING]!r}")
            if n_dims > MAX_DIMS:
                raise FormatError(
                    f"tensor {name[:SHOWN_STRING]!r} claims {n_dims:,} dimensions; the cap is {MAX_DIMS}",
                    "tensor_shapes",
                )
            dims = tuple(
                src.unpack(_I64, f"the dimensions of {name[:SHOWN_STRING]!r}")[0] for _ in range(n_dims)
            )
            (ggml_type,) = src.unpack(_U32, f"the type of {name[:SHOWN_STRING]!r}")
            (offset,) = src.unpack(U64, f"the offset of {name[:SHOWN_STRING]!r}")
            self.tensors.add(name, dims, ggml_type, offset)
            self.tensors_read += 1
        self.checks.extend(self.tensors.info_checks(self.tensor_count))

    def _offsets(self) -> None:
        if not self.tensor_count:
            self.checks.append(Check("offsets_inside_file", "pass", "no tensors"))
            return
        self.checks.extend(self.tensors.offset_checks(self.src.pos, self.src.size, self.alignment))

    def _header(self) -> FileHeader:
        checks = list(self.checks)
        architecture = self.values.get("general.architecture")
        if self.version and not isinstance(architecture, str):
            checks.append(Check("gguf_architecture", "warn", "general.architecture is missing"))
        for key, length in self.chat_templates.items():
            problem = self.template_problems.get(key)
            if problem is not None:
                checks.append(Check("chat_template", "fail", f"{key}: {problem}"[:500]))
            else:
                detail = f"{key} present ({length:,} bytes): read, never run; rendered only in MOC's sandbox"
                checks.append(Check("chat_template", "pass", detail))
        complete = self.tensors_read == self.tensor_count
        tensors = self.tensors
        every_name_kept = complete and len(tensors.kept) == self.tensor_count
        return FileHeader(
            format=FileFormat.GGUF.value,
            metadata=summarise(
                self.values,
                architecture if isinstance(architecture, str) else None,
                version=self.version,
                kv_count=self.kv_count,
                dtypes=tensors.dtypes,
                alignment=self.alignment,
                chat_templates=self.chat_templates,
            ),
            tensor_count=self.tensor_count,
            # Clipped so a hostile header's sums (already failed) still fit a 64-bit column.
            params_count=min(tensors.params, INT64_MAX) if complete and self.version else None,
            weights_bytes=min(tensors.weights, INT64_MAX),
            dtypes=dict(tensors.dtypes),
            checks=tuple(checks),
            references=split_siblings(self.name, self.values),
            tensors=tuple(tensors.kept),
            # GGUF shapes count values, quantised or not: nothing is packed beyond them.
            layout=(
                params.layout(((t.name, t.dtype, t.shape) for t in tensors.kept), packing=False)
                if every_name_kept
                else None
            ),
        )
