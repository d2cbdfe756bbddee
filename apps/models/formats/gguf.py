"""GGUF header reader: metadata key/values and tensor infos, never the tensor data.

A GGUF file says how many tensors and keys it holds and how long each string and array is,
so a hostile file can ask a naive reader for terabytes. Every count and length is capped and
checked against the bytes the file has left *before* anything is allocated; big arrays
(tokenizer vocabularies) are skipped past, keeping only their length and first items.
A chat template is data: its presence and length are recorded, it is never rendered
(rendering one unsandboxed was CVE-2024-34359).

Layout (little-endian, versions 2 and 3): magic "GGUF", u32 version, u64 tensor count,
u64 key/value count, the key/values, the tensor infos (name, u32 n_dims, i64 dims, u32 ggml
type, u64 offset), padding to the alignment, then the tensor data.
"""

from __future__ import annotations

import math
import os
import struct
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from apps.models.domain.formats import FileFormat
from apps.models.formats.base import Check, FileHeader, FormatError, TensorInfo

MAX_TENSORS = 1_000_000
MAX_KEYS = 100_000
MAX_STRING = 1 << 20
MAX_KEY = 64 << 10
MAX_ARRAY = 10_000_000
MAX_DIMS = 8
MAX_ARRAY_DEPTH = 4
DEFAULT_ALIGNMENT = 32
# Tensor infos kept on the header for tests and validation, by count and by name bytes;
# the counts and checks cover them all.
KEPT_TENSORS = 10_000
_KEPT_NAME_BYTES = 1 << 20
# First items kept of an array; the rest is skipped, only its length is recorded.
ARRAY_HEAD = 8
_INT64_MAX = (1 << 63) - 1
_WINDOW = 64 << 10

# ggml tensor type -> (name, elements per block, bytes per block), as ggml defines them.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}

# general.file_type (llama.cpp's llama_ftype) -> the quantisation name people use.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    4: "Q4_1_SOME_F16",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    33: "Q4_0_4_4",
    34: "Q4_0_4_8",
    35: "Q4_0_8_8",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}

_STRING, _ARRAY = 8, 9
# Metadata value type -> (name, fixed-width layout); strings and arrays are length-prefixed.
_SCALARS: dict[int, tuple[str, struct.Struct]] = {
    0: ("uint8", struct.Struct("<B")),
    1: ("int8", struct.Struct("<b")),
    2: ("uint16", struct.Struct("<H")),
    3: ("int16", struct.Struct("<h")),
    4: ("uint32", struct.Struct("<I")),
    5: ("int32", struct.Struct("<i")),
    6: ("float32", struct.Struct("<f")),
    7: ("bool", struct.Struct("<?")),
    10: ("uint64", struct.Struct("<Q")),
    11: ("int64", struct.Struct("<q")),
    12: ("float64", struct.Struct("<d")),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_COUNTS = struct.Struct("<QQ")
_ARRAY_PREFIX = struct.Struct("<IQ")
# The smallest a key/value (empty key, u32 type, one byte) and a tensor info can be.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8

_KEPT_GENERAL = frozenset(
    {
        "general.architecture",
        "general.name",
        "general.basename",
        "general.size_label",
        "general.file_type",
        "general.quantization_version",
        "general.alignment",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
    }
)
# Per-architecture keys, found as "<architecture>.<suffix>"; the metadata name each gets.
_ARCH_KEYS = {
    "context_length": "context_length",
    "block_count": "block_count",
    "embedding_length": "embedding_length",
    "feed_forward_length": "feed_forward_length",
    "attention.head_count": "head_count",
    "attention.head_count_kv": "head_count_kv",
    "attention.key_length": "key_length",
    "attention.value_length": "value_length",
    "vocab_size": "vocab_size",
    "expert_count": "expert_count",
    "expert_used_count": "expert_used_count",
}
_KEPT_SUFFIXES = tuple("." + suffix for suffix in _ARCH_KEYS)
_KEPT_VALUES = 256
_CHAT_TEMPLATE = "tokenizer.chat_template"
_SHOWN_STRING = 200


@dataclass(frozen=True, slots=True)
class ArrayValue:
    """A metadata array as kept: its element type, full length and first items only."""

    type: str
    length: int
    head: tuple[Any, ...]


class _Source:
    """Reads a file forward through a small window; a skip moves the position without reading.

    Every read is checked against the bytes left first, so a claimed length can never make
    the reader allocate more than the file holds. `stage` names the check a truncation fails.
    """

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle = handle
        self.size = size
        self.pos = 0
        self.stage = "gguf_header"
        self._buf = b""
        self._start = 0

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            raise FormatError(
                f"{what} needs {n:,} bytes at byte {self.pos:,}, but the file ends at byte {self.size:,}",
                self.stage,
            )

    def _window(self, n: int, what: str) -> int:
        self.need(n, what)
        offset = self.pos - self._start
        if offset < 0 or offset + n > len(self._buf):
            self.handle.seek(self.pos)
            self._buf = self.handle.read(max(n, _WINDOW))
            self._start = self.pos
            offset = 0
            if len(self._buf) < n:
                raise FormatError(f"the file shrank while being read, at byte {self.pos:,}", "readable")
        self.pos += n
        return offset

    def unpack(self, layout: struct.Struct, what: str) -> tuple[Any, ...]:
        offset = self._window(layout.size, what)
        return layout.unpack_from(self._buf, offset)

    def take(self, n: int, what: str) -> bytes:
        offset = self._window(n, what)
        return self._buf[offset : offset + n]

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n


class _Problems:
    """Per check: how many problems, and the first one, to name in the report."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def add(self, check: str, detail: str) -> None:
        self.count[check] += 1
        self.first.setdefault(check, detail)

    def check(self, name: str, passed: str) -> Check:
        count = self.count[name]
        if not count:
            return Check(name, "pass", passed)
        more = f" (and {count - 1:,} more)" if count > 1 else ""
        return Check(name, "fail", self.first[name] + more)


def read(path: Path) -> FileHeader:
    """Read a GGUF file's header; a broken or hostile file gives fail checks, never an exception."""
    try:
        with open(path, "rb") as handle:
            parser = _Parser(_Source(handle, os.fstat(handle.fileno()).st_size))
            return parser.parse()
    except OSError as error:
        return _Parser.unreadable(f"could not read the file: {error.strerror or error}")


class _Parser:
    def __init__(self, source: _Source) -> None:
        self.src = source
        self.checks: list[Check] = []
        self.problems = _Problems()
        self.version = 0
        self.tensor_count = 0
        self.kv_count = 0
        self.values: dict[str, Any] = {}
        self.chat_templates: dict[str, int] = {}
        self.alignment = DEFAULT_ALIGNMENT
        self.tensors: list[TensorInfo] = []
        self.kept_name_bytes = 0
        self.tensors_read = 0
        self.params = 0
        self.weights = 0
        self.dtypes: Counter[str] = Counter()
        self.names: set[int] = set()
        # Offsets and sizes of every tensor, compact: 16 bytes a tensor even at the cap.
        self.offsets = array("Q")
        self.sizes = array("Q")
        self.sizes_known = True

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

    def _string(self, cap: int, what: str, *, keep: bool = True) -> str | int:
        """A length-prefixed string, or only its length when not kept (then it is skipped)."""
        (length,) = self.src.unpack(_U64, f"the length of {what}")
        if length > cap:
            raise FormatError(f"{what} claims {length:,} bytes; the cap is {cap:,}", self.src.stage)
        if not keep:
            self.src.skip(length, what)
            return length
        return self.src.take(length, what).decode("utf-8", errors="replace")

    def _metadata(self) -> None:
        self.src.stage = "gguf_metadata"
        keys: set[int] = set()
        for index in range(self.kv_count):
            key = str(self._string(MAX_KEY, f"key #{index}"))
            if hash(key) in keys:
                raise FormatError(f"metadata key {key[:_SHOWN_STRING]!r} appears twice", "gguf_metadata")
            keys.add(hash(key))
            (vtype,) = self.src.unpack(_U32, f"the type of {key[:_SHOWN_STRING]!r}")
            if key == _CHAT_TEMPLATE or key.startswith(_CHAT_TEMPLATE + "."):
                self._chat_template(key, vtype)
                continue
            keep = key in _KEPT_GENERAL or (len(self.values) < _KEPT_VALUES and key.endswith(_KEPT_SUFFIXES))
            value = self._value(vtype, f"the value of {key[:_SHOWN_STRING]!r}", depth=0, keep=keep)
            if keep:
                self.values[key] = value
        self.checks.append(
            Check("gguf_metadata", "pass", f"{self.kv_count:,} keys read; counts and lengths within the caps")
        )
        self._alignment()

    def _chat_template(self, key: str, vtype: int) -> None:
        if vtype != _STRING:
            raise FormatError(f"{key!r} is not a string", "gguf_metadata")
        length = self._string(MAX_STRING, f"the value of {key!r}", keep=False)
        self.chat_templates[key] = int(length)

    def _value(self, vtype: int, what: str, *, depth: int, keep: bool) -> Any:
        src = self.src
        if vtype in _SCALARS:
            _, layout = _SCALARS[vtype]
            if not keep:
                src.skip(layout.size, what)
                return None
            return src.unpack(layout, what)[0]
        if vtype == _STRING:
            text = self._string(MAX_STRING, what, keep=keep)
            return text[:_SHOWN_STRING] if keep else None
        if vtype != _ARRAY:
            raise FormatError(f"{what} has unknown type {vtype}", "gguf_metadata")
        if depth >= MAX_ARRAY_DEPTH:
            raise FormatError(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}", "gguf_metadata")
        (etype, length) = src.unpack(_ARRAY_PREFIX, what)
        if length > MAX_ARRAY:
            raise FormatError(f"{what} claims {length:,} items; the cap is {MAX_ARRAY:,}", "gguf_metadata")
        if etype in _SCALARS:
            name, layout = _SCALARS[etype]
            src.need(length * layout.size, f"{what} ({length:,} {name} items)")
            kept = min(length, ARRAY_HEAD) if keep else 0
            head = tuple(src.unpack(layout, what)[0] for _ in range(kept))
            src.skip((length - kept) * layout.size, what)
            return ArrayValue(name, length, head)
        if etype == _STRING:
            return ArrayValue("string", length, self._strings(length, what, keep=keep))
        if etype != _ARRAY:
            raise FormatError(f"{what} is an array of unknown type {etype}", "gguf_metadata")
        # Each inner array takes at least its 12-byte prefix.
        src.need(length * _ARRAY_PREFIX.size, f"{what} ({length:,} arrays)")
        items = []
        for index in range(length):
            item = self._value(etype, f"{what}[{index}]", depth=depth + 1, keep=keep and index < ARRAY_HEAD)
            if keep and index < ARRAY_HEAD:
                items.append(item)
        return ArrayValue("array", length, tuple(items))

    def _strings(self, length: int, what: str, *, keep: bool) -> tuple[str, ...]:
        """Walk an array of strings (a vocabulary: 100k+ of them) keeping only the first few."""
        src = self.src
        # Each string takes at least its 8-byte length.
        src.need(length * _U64.size, f"{what} ({length:,} strings)")
        head = []
        for index in range(length):
            (size,) = src.unpack(_U64, what)
            if size > MAX_STRING:
                raise FormatError(
                    f"{what}[{index}] claims {size:,} bytes; the cap is {MAX_STRING:,}", src.stage
                )
            if keep and index < ARRAY_HEAD:
                head.append(src.take(size, what).decode("utf-8", errors="replace")[:_SHOWN_STRING])
            else:
                src.skip(size, what)
        return tuple(head)

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
            name = str(self._string(MAX_KEY, f"the name of tensor #{index}"))
            (n_dims,) = src.unpack(_U32, f"the dimension count of {name[:_SHOWN_STRING]!r}")
            if n_dims > MAX_DIMS:
                raise FormatError(
                    f"tensor {name[:_SHOWN_STRING]!r} claims {n_dims:,} dimensions; the cap is {MAX_DIMS}",
                    "tensor_shapes",
                )
            dims = tuple(
                src.unpack(_I64, f"the dimensions of {name[:_SHOWN_STRING]!r}")[0] for _ in range(n_dims)
            )
            (ggml_type,) = src.unpack(_U32, f"the type of {name[:_SHOWN_STRING]!r}")
            (offset,) = src.unpack(_U64, f"the offset of {name[:_SHOWN_STRING]!r}")
            self._tensor(name, dims, ggml_type, offset)
            self.tensors_read += 1
        self.checks.append(
            self.problems.check("tensor_names_unique", f"{self.tensor_count:,} distinct names")
        )
        self.checks.append(self.problems.check("dtype_known", f"types: {_counted(self.dtypes)}"))
        self.checks.append(
            self.problems.check("tensor_shapes", "dimensions non-negative and whole blocks of their type")
        )

    def _tensor(self, name: str, dims: tuple[int, ...], ggml_type: int, offset: int) -> None:
        shown = repr(name[:_SHOWN_STRING])
        if hash(name) in self.names:
            self.problems.add("tensor_names_unique", f"tensor name {shown} appears twice")
        self.names.add(hash(name))
        known = ggml_type in GGML_TYPES
        if not known:
            self.problems.add("dtype_known", f"tensor {shown} has unknown ggml type {ggml_type}")
        elements = math.prod(dims)
        if any(d < 0 for d in dims):
            self.problems.add("tensor_shapes", f"tensor {shown} has a negative dimension {dims}")
            known = False
        elif elements > _INT64_MAX:
            self.problems.add("tensor_shapes", f"tensor {shown} has more elements than fit in 64 bits")
            known = False
        nbytes = 0
        if known:
            type_name, block, block_bytes = GGML_TYPES[ggml_type]
            if dims and dims[0] % block:
                self.problems.add(
                    "tensor_shapes",
                    f"tensor {shown}: innermost dimension {dims[0]:,} is not a multiple of the "
                    f"{type_name} block of {block}",
                )
                known = False
            else:
                nbytes = elements // block * block_bytes
                self.dtypes[type_name] += 1
        self.params += elements if elements <= _INT64_MAX else 0
        self.weights += nbytes
        self.sizes_known &= known
        if known:
            self.offsets.append(offset)
            self.sizes.append(nbytes)
        self.kept_name_bytes += len(name)
        if len(self.tensors) < KEPT_TENSORS and self.kept_name_bytes <= _KEPT_NAME_BYTES:
            dtype = GGML_TYPES[ggml_type][0] if ggml_type in GGML_TYPES else f"type_{ggml_type}"
            # Row-major like the other formats' shapes; GGUF stores the innermost dimension first.
            self.tensors.append(TensorInfo(name=name, dtype=dtype, shape=dims[::-1], nbytes=nbytes))

    def _offsets(self) -> None:
        """Tensor data must lie inside the file, each tensor where the one before it ends, padded.

        That contiguity is what llama.cpp's loader demands; a gap or an overlap is refused.
        """
        align = self.alignment
        data_start = -(-self.src.pos // align) * align
        data_bytes = self.src.size - data_start
        if self.tensor_count and data_bytes < 0:
            raise FormatError(
                f"tensor data would start at byte {data_start:,}, past the end of the file",
                "offsets_inside_file",
            )
        expected = 0
        for index, (offset, nbytes) in enumerate(zip(self.offsets, self.sizes, strict=True)):
            where = f"tensor #{index} at data offset {offset:,}"
            if offset + nbytes > data_bytes:
                self.problems.add(
                    "offsets_inside_file",
                    f"{where} needs {nbytes:,} bytes but the data section holds {data_bytes:,}",
                )
            if offset % align:
                self.problems.add("offsets_contiguous", f"{where} is not aligned to {align}")
            elif offset < expected:
                self.problems.add("offsets_contiguous", f"{where} overlaps the tensor before it")
            elif offset > expected:
                self.problems.add(
                    "offsets_contiguous", f"{where} leaves a gap of {offset - expected:,} bytes"
                )
            expected = max(expected, offset + -(-nbytes // align) * align)
        self.checks.append(
            self.problems.check(
                "offsets_inside_file", f"tensor data within the file's {data_bytes:,} data bytes"
            )
        )
        if self.sizes_known:
            self.checks.append(self.problems.check("offsets_contiguous", "tensors packed in order, aligned"))
        else:
            self.checks.append(
                Check("offsets_contiguous", "warn", "not checked: some tensor sizes are unknown")
            )

    def _header(self) -> FileHeader:
        checks = list(self.checks)
        architecture = self.values.get("general.architecture")
        if self.version and not isinstance(architecture, str):
            checks.append(Check("gguf_architecture", "warn", "general.architecture is missing"))
        for key, length in self.chat_templates.items():
            checks.append(
                Check(
                    "chat_template", "pass", f"{key} present ({length:,} bytes): kept as data, never rendered"
                )
            )
        complete = self.tensors_read == self.tensor_count
        return FileHeader(
            format=FileFormat.GGUF.value,
            metadata=self._summary(architecture if isinstance(architecture, str) else None),
            tensor_count=self.tensor_count,
            params_count=self.params if complete and self.version else None,
            weights_bytes=self.weights,
            dtypes=dict(self.dtypes),
            checks=tuple(checks),
            tensors=tuple(self.tensors),
        )

    def _summary(self, architecture: str | None) -> dict[str, Any]:
        if not self.version:
            return {}
        values = self.values
        summary: dict[str, Any] = {"gguf_version": self.version, "kv_count": self.kv_count}
        if architecture is not None:
            summary["architecture"] = architecture[:_SHOWN_STRING]
        for key, name in (("general.name", "name"), ("tokenizer.ggml.model", "tokenizer_model")):
            if isinstance(values.get(key), str):
                summary[name] = values[key][:_SHOWN_STRING]
        if architecture is not None:
            for suffix, name in _ARCH_KEYS.items():
                number = _as_int(values.get(f"{architecture}.{suffix}"))
                if number is not None:
                    summary[name] = number
        tokens = values.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayValue) and "vocab_size" not in summary:
            summary["vocab_size"] = tokens.length
        file_type = _as_int(values.get("general.file_type"))
        if file_type is not None:
            summary["file_type"] = file_type
            summary["quantization"] = FILE_TYPES.get(file_type, f"unknown ({file_type})")
        summary["tensor_types"] = dict(self.dtypes)
        summary["alignment"] = self.alignment
        if _CHAT_TEMPLATE in self.chat_templates:
            summary["chat_template_bytes"] = self.chat_templates[_CHAT_TEMPLATE]
        return summary


def _as_int(value: Any) -> int | None:
    """A metadata number; per-layer arrays (some models vary head counts by layer) give their largest."""
    if isinstance(value, ArrayValue) and value.head and len(value.head) == value.length:
        value = max(value.head) if all(isinstance(v, int) for v in value.head) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{name} × {count:,}" for name, count in counts.most_common()) or "none"
