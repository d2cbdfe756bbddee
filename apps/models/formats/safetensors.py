"""Safetensors: one file's header, and the index that ties a sharded set together.

A file is an 8-byte little-endian header length N, N bytes of JSON, then the tensors' bytes.
The rules follow the format's own library (huggingface/safetensors `Metadata::validate`) and
are no looser: N at most 100,000,000 bytes, tensors sorted by offset cover the data exactly,
from 0 with no gap or overlap, and each tensor's byte length is its element count times its
dtype's size. Only the header is read, in one bounded read; the data never is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from apps.models.domain import params
from apps.models.domain.formats import FileFormat
from apps.models.domain.headers import Check, FileHeader, TensorInfo
from apps.models.formats import hf
from apps.models.formats.base import FormatError, inside_roots

MAX_HEADER_BYTES = 100_000_000
# Bits per element, as the library's Dtype::bitsize gives them (safetensors 0.8; F4 and F6 pack
# below a byte).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
# The library counts in 64-bit unsigned integers and refuses what overflows them; Python's
# ints never overflow, so the same bound is applied by hand.
_USIZE_LIMIT = 1 << 64
MAX_SHARDS = 10_000  # the largest published sets have a few hundred
_TENSORS_KEPT = 4096
_NAMED = 3  # offending tensors named in one check's detail
_METADATA_KEPT = 32


def read(path: Path) -> FileHeader:
    """Check one .safetensors file's header against the format's rules; raises FormatError if unreadable."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        length, raw = _read_header_bytes(handle, size)
    header, duplicates = _parse(raw)
    checks = [
        Check("header_size", "pass", f"{length:,} header bytes"),
        Check("header_json", "pass", "a JSON object"),
    ]
    if duplicates:
        checks.append(Check("tensor_names_unique", "fail", f"named twice: {_names(duplicates)}"))
    else:
        checks.append(Check("tensor_names_unique", "pass", "every tensor named once"))

    metadata: dict[str, Any] = {"header_bytes": length}
    extra = header.pop("__metadata__", None)
    if extra is not None:
        if isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values()):
            metadata["metadata"] = {k[:100]: v[:200] for k, v in list(extra.items())[:_METADATA_KEPT]}
            checks.append(Check("metadata_strings", "pass", f"{len(extra)} __metadata__ entries"))
        else:
            checks.append(Check("metadata_strings", "fail", "__metadata__ must map strings to strings"))

    tensors, entry_problems = _entries(header)
    checks.append(_verdict("tensor_entry", entry_problems, f"{len(header)} tensor entries well formed"))
    checks.extend(_validate(tensors, data_bytes=size - 8 - length))

    dtypes: dict[str, int] = {}
    for tensor in tensors:
        dtypes[tensor.dtype] = dtypes.get(tensor.dtype, 0) + 1
    return FileHeader(
        format=FileFormat.SAFETENSORS.value,
        metadata=metadata,
        tensor_count=len(header),
        params_count=sum(_elements(t.shape) or 0 for t in tensors),
        weights_bytes=sum(max(t.nbytes, 0) for t in tensors),
        dtypes=dtypes,
        checks=tuple(checks),
        tensors=tuple(t.info for t in tensors[:_TENSORS_KEPT]),
        # Over every tensor, not only those kept: the names are all in memory here.
        layout=params.layout((t.name, t.dtype, t.shape) for t in tensors),
    )


def read_index(
    path: Path, *, roots: Sequence[Path] = ()
) -> tuple[dict[str, Any], tuple[Check, ...], tuple[str, ...]]:
    """A shard index (model.safetensors.index.json): its metadata, checks and the shard names.

    Every shard must be a plain relative name that exists next to the index and, when roots are
    given, resolves inside them. Raises FormatError when the index is not a bounded JSON object.
    """
    path = Path(path)
    data = hf.load_json(path)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        check = Check("index_weight_map", "fail", "weight_map must be a non-empty object")
        return {}, (check,), ()
    if not all(isinstance(shard, str) and shard for shard in weight_map.values()):
        check = Check("index_weight_map", "fail", "every weight_map value must be a shard file name")
        return {}, (check,), ()
    shards = tuple(sorted(set(weight_map.values())))
    if len(shards) > MAX_SHARDS:
        check = Check(
            "index_weight_map", "fail", f"{len(shards):,} shards; more than {MAX_SHARDS:,} is refused"
        )
        return {}, (check,), ()
    checks = [Check("index_weight_map", "pass", f"{len(weight_map)} tensors in {len(shards)} shards")]

    unsafe = [s[:120] for s in shards if not _plain_relative(s)]
    checks.append(_verdict("shard_paths_safe", unsafe, "shard names are relative to the index"))
    safe = [s for s in shards if _plain_relative(s)]
    missing = [s for s in safe if not (path.parent / s).is_file()]
    checks.append(_verdict("shards_exist", missing, "every shard is next to the index", "missing"))
    if roots:
        escaping = [s for s in safe if s not in missing and not inside_roots(path.parent / s, roots)]
        checks.append(_verdict("shards_inside_roots", escaping, "shards resolve inside the model roots"))

    metadata: dict[str, Any] = {"shards": len(shards), "tensors_indexed": len(weight_map)}
    extra = data.get("metadata")
    total = extra.get("total_size") if isinstance(extra, dict) else None
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        metadata["total_size"] = total
    return metadata, tuple(checks), shards


@dataclass(frozen=True, slots=True)
class _Tensor:
    """A tensor entry whose fields have the right types (its sizes are judged later)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def info(self) -> TensorInfo:
        return TensorInfo(self.name, self.dtype, self.shape, self.nbytes)


def _read_header_bytes(handle: Any, size: int) -> tuple[int, bytes]:
    prefix = handle.read(8)
    if len(prefix) < 8:
        detail = f"the file has {len(prefix)} bytes, fewer than the 8-byte header length"
        raise FormatError(detail, "header_size")
    length = int.from_bytes(prefix, "little")
    if length > MAX_HEADER_BYTES:
        detail = f"the header claims {length:,} bytes, over the format's limit of {MAX_HEADER_BYTES:,}"
        raise FormatError(detail, "header_size")
    if 8 + length > size:
        raise FormatError(
            f"the header claims {length:,} bytes but only {size - 8:,} follow the length", "header_size"
        )
    # A peek first, so a large claimed header that is not JSON at all is refused before the
    # whole of it is read.
    head = handle.read(min(length, 4096))
    if not head.lstrip(b" \t\r\n").startswith(b"{"):
        raise FormatError("the header is not a JSON object (it does not start with '{')", "header_json")
    return length, head + handle.read(length - len(head))


def _parse(raw: bytes) -> tuple[dict[str, Any], list[str]]:
    """The header object, and its keys given more than once (tensor names)."""
    repeated: dict[int, list[str]] = {}  # by id() of the object holding the repeated keys

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        twice = []
        for key, value in items:
            if key in result:
                twice.append(key)
            result[key] = value
        if twice:
            repeated[id(result)] = twice
        return result

    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=refuse_constant)
    except UnicodeDecodeError as error:
        raise FormatError(f"the header is not UTF-8 (byte {error.start})", "header_json") from None
    except (ValueError, RecursionError) as error:
        raise FormatError(f"the header is not valid JSON: {str(error)[:120]}", "header_json") from None
    if not isinstance(header, dict):
        raise FormatError(f"the header is a JSON {type(header).__name__}, not an object", "header_json")
    names = repeated.pop(id(header), [])
    if repeated:
        nested = [key for keys in repeated.values() for key in keys]
        raise FormatError(f"a key is given twice inside an entry: {_names(nested)}", "header_json")
    return header, names


def _entries(header: dict[str, Any]) -> tuple[list[_Tensor], list[str]]:
    tensors: list[_Tensor] = []
    problems: list[str] = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            problems.append(f"{name!r} is not an object")
            continue
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            problems.append(f"{name!r} has no dtype")
        elif not (isinstance(shape, list) and all(_count(d) for d in shape)):
            problems.append(f"{name!r} shape must be a list of non-negative integers")
        elif not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)):
            problems.append(f"{name!r} data_offsets must be two non-negative integers")
        else:
            tensors.append(_Tensor(name, dtype, tuple(shape), offsets[0], offsets[1]))
    return tensors, problems


def _validate(tensors: list[_Tensor], *, data_bytes: int) -> list[Check]:
    unknown = [f"{t.name!r} ({t.dtype[:20]})" for t in tensors if t.dtype not in DTYPE_BITS]
    checks = [_verdict("dtype_known", unknown, "every dtype is a safetensors dtype", "unknown dtype")]

    size_problems: list[str] = []
    for tensor in tensors:
        if tensor.dtype not in DTYPE_BITS:
            continue
        elements = _elements(tensor.shape)
        bits = None if elements is None else elements * DTYPE_BITS[tensor.dtype]
        if bits is None or bits >= _USIZE_LIMIT:
            size_problems.append(f"{tensor.name!r} shape {list(tensor.shape)[:8]} overflows")
        elif bits % 8:
            size_problems.append(f"{tensor.name!r} does not fill whole bytes ({bits} bits)")
        elif tensor.end >= tensor.begin and tensor.nbytes != bits // 8:
            need = bits // 8
            size_problems.append(f"{tensor.name!r} spans {tensor.nbytes:,} bytes, its shape needs {need:,}")
    checks.append(_verdict("tensor_size", size_problems, "every tensor's bytes match its dtype and shape"))

    offset_problems: list[str] = []
    position = 0
    for tensor in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if tensor.end < tensor.begin:
            offset_problems.append(f"{tensor.name!r} ends ({tensor.end}) before it begins ({tensor.begin})")
        elif tensor.begin > position:
            offset_problems.append(f"gap before {tensor.name!r}: bytes {position}-{tensor.begin} unused")
        elif tensor.begin < position:
            offset_problems.append(f"{tensor.name!r} overlaps the previous tensor (starts at {tensor.begin})")
        position = max(position, tensor.end)
    checks.append(_verdict("offsets_contiguous", offset_problems, "tensors follow each other from byte 0"))

    if position == data_bytes:
        checks.append(Check("data_length", "pass", f"the tensors cover all {data_bytes:,} data bytes"))
    elif position > data_bytes:
        detail = f"the tensors reach byte {position:,} but the file holds {data_bytes:,} after the header"
        checks.append(Check("data_length", "fail", detail))
    else:
        detail = f"the tensors cover {position:,} bytes but {data_bytes:,} follow the header"
        checks.append(Check("data_length", "fail", detail))
    return checks


def _count(value: Any) -> bool:
    """A JSON non-negative integer that fits the library's 64-bit unsigned fields."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _USIZE_LIMIT


def _elements(shape: tuple[int, ...]) -> int | None:
    """The element count, or None once it passes the 64-bit limit (checked at each step)."""
    total = 1
    for dim in shape:
        total *= dim
        if total >= _USIZE_LIMIT:
            return None
    return total


def _plain_relative(name: str) -> bool:
    pure = PurePosixPath(name)
    return not pure.is_absolute() and "\\" not in name and ".." not in pure.parts and name.strip() == name


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(repr(i)[:80] for i in items[:_NAMED])
    return shown + (f" and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


def _verdict(check: str, problems: Sequence[str], ok: str, label: str = "") -> Check:
    if not problems:
        return Check(check, "pass", ok)
    shown = "; ".join(p for p in problems[:_NAMED])
    more = f" (and {len(problems) - _NAMED} more)" if len(problems) > _NAMED else ""
    return Check(check, "fail", f"{label + ': ' if label else ''}{shown}{more}")
