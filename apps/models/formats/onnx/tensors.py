"""ONNX tensors checked against where their data is: inline, raw_data or a side file.

Every size a tensor claims must be backed by bytes that exist, so the totals a header reports
are bounded by the files, whatever the dims say. Initializers may keep their data in side
files (external data) whose locations a hostile file can point anywhere: each must be
relative, stay inside the model roots (symlinks followed), exist, hold the bytes claimed, and
not be a model of its own (a safetensors, GGUF or ONNX file, or a pickle named .bin).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apps.models.domain.headers import Check, Problems, TensorInfo
from apps.models.formats.base import inside_roots, model_file
from apps.models.formats.onnx.wire import LEN

# Tensor infos kept for tests and validation.
KEPT_TENSORS = 10_000
_KEPT_NAME_BYTES = 1 << 20
SHOWN = 200
INT64_MAX = (1 << 63) - 1

# TensorProto.DataType -> (name, bits per element); names follow safetensors where it has one.
DATA_TYPES: dict[int, tuple[str, int]] = {
    1: ("F32", 32),
    2: ("U8", 8),
    3: ("I8", 8),
    4: ("U16", 16),
    5: ("I16", 16),
    6: ("I32", 32),
    7: ("I64", 64),
    8: ("STRING", 0),
    9: ("BOOL", 8),
    10: ("F16", 16),
    11: ("F64", 64),
    12: ("U32", 32),
    13: ("U64", 64),
    14: ("C64", 64),
    15: ("C128", 128),
    16: ("BF16", 16),
    17: ("F8_E4M3", 8),
    18: ("F8_E4M3FNUZ", 8),
    19: ("F8_E5M2", 8),
    20: ("F8_E5M2FNUZ", 8),
    21: ("U4", 4),
    22: ("I4", 4),
    23: ("F4", 4),
    24: ("F8_E8M0", 8),
    25: ("U2", 2),
    26: ("I2", 2),
    27: ("F6_E2M3", 6),
    28: ("F6_E3M2", 6),
}
_STRING_TYPE = 8
# TensorProto fields that carry values inline (float_data, int32_data, string_data, int64_data,
# double_data, uint64_data) -> bytes per entry when packed, 1 for varints (at least a byte each).
# Their bytes are skipped, never read.
TYPED_DATA_FIELDS = {4: 4, 5: 1, 6: 0, 7: 1, 10: 8, 11: 1}
# Entries hold up to 4 values: INT2/UINT2 pack four into one int32_data entry.
VALUES_PER_ENTRY = 4


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a tensor's data is: raw_data's length, inline entries (an upper bound), side file entries."""

    raw: int | None
    inline: int | None
    external: dict[str, str] | None


def entries(number: int, wire: int, value: int) -> int:
    """The most values one typed-data field can hold: one unpacked, or as many as its packed bytes allow."""
    if wire != LEN or number == 6:
        return 1
    width = TYPED_DATA_FIELDS[number]
    return value // width


class Tensors:
    """The tensors a walk found: their problems per check, and the initializers' totals."""

    def __init__(self, folder: Path, roots: Sequence[Path]) -> None:
        self.folder = folder
        self.roots = roots
        self.problems = Problems()
        self.initializers = 0
        self.params = 0
        self.weights = 0
        self.dtypes: Counter[str] = Counter()
        # Hashes of the initializers' names, not the names: uniqueness in little memory.
        self.names: set[int] = set()
        self.kept: list[TensorInfo] = []
        self.kept_name_bytes = 0
        # Side file location -> its size, or why it was refused.
        self.external: dict[str, int | str] = {}
        self.references: list[str] = []

    def checks(self) -> list[Check]:
        """One line per tensor check: a pass, or a fail naming the first problem and how many more."""
        problems = self.problems
        refs = len(self.references)
        external = (
            f"{refs} side file{'s' if refs != 1 else ''} inside the roots" if refs else "no external data"
        )
        return [
            problems.check("tensor_names_unique", f"{self.initializers:,} distinct initializer names"),
            problems.check("dtype_known", f"types: {_counted(self.dtypes)}"),
            problems.check("tensor_shapes", "dimensions non-negative"),
            problems.check("initializer_sizes", "stored sizes match dims × dtype"),
            problems.check("external_data_inside_roots", external),
        ]

    def found(self, name: str, dims: tuple[int, ...], code: int, stored: Stored) -> None:
        """Check a tensor's header against where its data is: inline, raw_data or a side file."""
        shown = repr(name[:SHOWN])
        if code not in DATA_TYPES:
            self.problems.add("dtype_known", f"tensor {shown} has unknown data type {code}")
        if any(d < 0 for d in dims):
            self.problems.add("tensor_shapes", f"tensor {shown} has a negative dimension {list(dims)}")
            return
        elements = math.prod(dims)
        if elements > INT64_MAX:
            self.problems.add("tensor_shapes", f"tensor {shown} has more elements than fit in 64 bits")
            return
        expected = _nbytes(dims, code)
        if stored.external is not None:
            self._external(shown, stored.external, expected)
        elif stored.raw is not None:
            if expected is not None and stored.raw != expected:
                self.problems.add(
                    "initializer_sizes",
                    f"tensor {shown} stores {stored.raw:,} bytes; dims × dtype need {expected:,}",
                )
        elif elements > (stored.inline or 0) * VALUES_PER_ENTRY:
            self.problems.add(
                "initializer_sizes",
                f"tensor {shown} claims {elements:,} values but stores "
                + (f"at most {stored.inline * VALUES_PER_ENTRY:,}" if stored.inline else "none"),
            )

    def _external(self, shown: str, entries: dict[str, str], expected: int | None) -> None:
        location = entries.get("location", "")
        known = self.external.get(location)
        if known is None:
            known = self._side_file(location)
            self.external[location] = known
        if isinstance(known, str):
            self.problems.add("external_data_inside_roots", f"tensor {shown}: {known}")
            return
        try:
            offset = int(entries.get("offset") or 0)
            length = int(entries["length"]) if entries.get("length") else None
        except ValueError:
            self.problems.add(
                "initializer_sizes", f"tensor {shown}: external offset or length is not a number"
            )
            return
        if length is None:
            length = known - offset
        if offset < 0 or length < 0 or offset + length > known:
            self.problems.add(
                "initializer_sizes",
                f"tensor {shown}: bytes {offset:,}..{offset + length:,} lie outside "
                f"{location[:SHOWN]!r} ({known:,} bytes)",
            )
        elif expected is not None and length != expected:
            self.problems.add(
                "initializer_sizes",
                f"tensor {shown}: external data holds {length:,} bytes; needs {expected:,}",
            )

    def _side_file(self, location: str) -> int | str:
        """The size of an external data file, or why it is refused; refusals never touch the file."""
        shown = repr(location[:SHOWN])
        if not location:
            return "external data without a location"
        posix = location.replace("\\", "/")
        if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or "\x00" in posix:
            return f"external data location {shown} is not a relative path"
        relative = PurePosixPath(posix)
        if ".." in relative.parts:
            return f"external data location {shown} climbs out of the model's folder"
        target = self.folder / relative
        if not inside_roots(target, self.roots):
            return f"external data location {shown} resolves outside the model roots"
        try:
            if not target.is_file():
                return f"external data file {shown} does not exist"
            size = target.stat().st_size
        except OSError as error:
            return f"external data file {shown} cannot be read ({error.strerror or error})"
        # A hostile graph could claim another model as its data, and so hide it from discovery.
        if (other := model_file(target)) is not None:
            return f"external data location {shown} is a model of its own ({other.value}), not raw data"
        self.references.append(relative.as_posix())
        return size

    def initializer(self, name: str, dims: tuple[int, ...], code: int) -> None:
        self.initializers += 1
        if hash(name) in self.names:
            self.problems.add("tensor_names_unique", f"initializer name {name[:SHOWN]!r} appears twice")
        self.names.add(hash(name))
        # Shapes tensor_shapes refused count for nothing.
        valid = all(d >= 0 for d in dims) and math.prod(dims) <= INT64_MAX
        elements = math.prod(dims) if valid else 0
        nbytes = (_nbytes(dims, code) or 0) if valid else 0
        dtype = DATA_TYPES[code][0] if code in DATA_TYPES else f"type_{code}"
        self.params += elements
        self.weights += nbytes
        self.dtypes[dtype] += 1
        self.kept_name_bytes += len(name)
        if len(self.kept) < KEPT_TENSORS and self.kept_name_bytes <= _KEPT_NAME_BYTES:
            self.kept.append(TensorInfo(name=name, dtype=dtype, shape=dims, nbytes=nbytes))


def _nbytes(dims: tuple[int, ...], code: int) -> int | None:
    """Bytes of a tensor's data as raw_data packs it; None where that is not fixed (strings)."""
    if code not in DATA_TYPES or code == _STRING_TYPE:
        return None
    return -(-math.prod(dims) * DATA_TYPES[code][1] // 8)


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{name} × {count:,}" for name, count in counts.most_common()) or "none"
