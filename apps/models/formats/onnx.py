"""ONNX header reader: a protobuf wire-format walk that never loads the weights.

An ONNX file is one protobuf ModelProto. The walk reads the fields that describe the model
(ir_version, opset_import, producer, the graph's inputs, outputs and initializer headers)
and seeks past everything else, tensor payloads (raw_data) included, so memory stays small
however big the file is. Nesting depth, string lengths and counts are capped, and every
length is checked against the bytes of its enclosing message before anything is read.

Initializers may keep their data in side files (external data). Their locations are paths
from the model's folder, and a hostile file can point them anywhere: each must be relative,
stay inside the model roots (symlinks followed), exist, and hold the bytes claimed.
Field numbers are those of onnx.proto.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from apps.models.domain.formats import FileFormat
from apps.models.formats.base import Check, FileHeader, FormatError, TensorInfo, inside_roots

MAX_DEPTH = 64
MAX_STRING = 64 << 10
MAX_DIMS = 64
MAX_TENSORS = 1_000_000
MAX_EXTERNAL_ENTRIES = 16
# Inputs and outputs kept for the pages; tensor infos kept for tests and validation.
KEPT_VALUES = 256
KEPT_TENSORS = 10_000
_KEPT_NAME_BYTES = 1 << 20
_WINDOW = 64 << 10
_SHOWN = 200

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

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
_EXTERNAL = 1
# TensorProto fields that carry values inline; their bytes are skipped, never read.
_TYPED_DATA_FIELDS = frozenset({4, 5, 6, 7, 10, 11})
_TYPE_KINDS = {4: "sequence", 5: "map", 7: "opaque", 8: "sparse_tensor", 9: "optional"}


class _Source:
    """Reads a file through a small window; a skip moves the position without reading."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle = handle
        self.size = size
        self.pos = 0
        self._buf = b""
        self._start = 0

    def _window(self, n: int) -> int:
        offset = self.pos - self._start
        if offset < 0 or offset + n > len(self._buf):
            self.handle.seek(self.pos)
            self._buf = self.handle.read(max(n, _WINDOW))
            self._start = self.pos
            offset = 0
            if len(self._buf) < n:
                raise FormatError(f"the file shrank while being read, at byte {self.pos:,}", "readable")
        return offset

    def varint(self, end: int, what: str) -> int:
        """A base-128 varint of at most 10 bytes, all before `end`."""
        available = min(10, end - self.pos)
        offset = self._window(available)
        result = 0
        for index in range(available):
            byte = self._buf[offset + index]
            result |= (byte & 0x7F) << (7 * index)
            if byte < 0x80:
                if index == 9 and byte > 1:
                    break
                self.pos += index + 1
                return result
        else:
            if available < 10:
                raise FormatError(
                    f"{what}: the varint at byte {self.pos:,} runs past the end of its message",
                    "onnx_structure",
                )
        raise FormatError(f"{what}: malformed varint at byte {self.pos:,}", "onnx_structure")

    def take(self, n: int) -> bytes:
        offset = self._window(n)
        self.pos += n
        return self._buf[offset : offset + n]


def _signed(value: int) -> int:
    """Protobuf writes negative int32/int64 values as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


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


def read(path: Path, *, roots: Sequence[Path]) -> FileHeader:
    """Read an ONNX file's header; a broken or hostile file gives fail checks, never an exception."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            walker = _Walker(_Source(handle, os.fstat(handle.fileno()).st_size), path.parent, roots)
            return walker.walk()
    except OSError as error:
        return FileHeader(
            format=FileFormat.ONNX.value,
            metadata={},
            tensor_count=0,
            params_count=None,
            weights_bytes=0,
            dtypes={},
            checks=(Check("readable", "fail", f"could not read the file: {error.strerror or error}"),),
        )


class _Walker:
    def __init__(self, source: _Source, folder: Path, roots: Sequence[Path]) -> None:
        self.src = source
        self.folder = folder
        self.roots = roots
        self.depth = 0
        self.problems = _Problems()
        self.ir_version: int | None = None
        self.producer = ""
        self.producer_version = ""
        self.opsets: dict[str, int] = {}
        self.graph_seen = False
        self.graph_name = ""
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.input_count = 0
        self.output_count = 0
        self.node_count = 0
        self.tensor_total = 0
        self.initializers = 0
        self.params = 0
        self.weights = 0
        self.dtypes: Counter[str] = Counter()
        self.names: set[int] = set()
        self.tensors: list[TensorInfo] = []
        self.kept_name_bytes = 0
        # Side file location -> its size, or why it was refused.
        self.external: dict[str, int | str] = {}
        self.references: list[str] = []

    def walk(self) -> FileHeader:
        checks: list[Check] = []
        try:
            self._model(self.src.size)
            checks.append(
                Check(
                    "onnx_structure",
                    "pass",
                    f"well-formed protobuf: {self.node_count:,} nodes, {self.initializers:,} initializers",
                )
            )
            checks.extend(self._model_checks())
        except FormatError as error:
            checks.append(Check(error.check, "fail", error.detail))
        checks.extend(self._tensor_checks())
        return FileHeader(
            format=FileFormat.ONNX.value,
            metadata=self._summary(),
            tensor_count=self.initializers,
            params_count=self.params if not checks or checks[0].status == "pass" else None,
            weights_bytes=self.weights,
            dtypes=dict(self.dtypes),
            checks=tuple(checks),
            references=tuple(self.references),
            tensors=tuple(self.tensors),
        )

    def _model_checks(self) -> list[Check]:
        if self.ir_version is None:
            return [Check("onnx_model", "fail", "no ir_version: not an ONNX model")]
        if not self.graph_seen:
            return [Check("onnx_model", "fail", "the model has no graph")]
        checks = [Check("onnx_model", "pass", f"IR version {self.ir_version}")]
        if self.opsets:
            shown = ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in self.opsets.items())
            checks.append(Check("onnx_opset", "pass", shown))
        elif self.ir_version >= 3:
            checks.append(Check("onnx_opset", "fail", "no opset_import: the operators' versions are unknown"))
        return checks

    def _tensor_checks(self) -> list[Check]:
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

    # -- the wire format --------------------------------------------------------------------

    def _fields(self, end: int, message: str) -> Iterator[tuple[int, int, int]]:
        """Each field of the message ending at `end`: (number, wire type, value or payload length).

        For a length-delimited field the position is at its payload while the caller handles
        it, and moves to the payload's end afterwards, whether or not the caller read it.
        """
        src = self.src
        if end > src.size:
            raise FormatError(
                f"{message} claims to end at byte {end:,}, but the file ends at byte {src.size:,}",
                "onnx_structure",
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormatError(f"messages nest deeper than {MAX_DEPTH} levels", "onnx_structure")
        while src.pos < end:
            tag = src.varint(end, message)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise FormatError(f"{message}: field number 0 at byte {src.pos:,}", "onnx_structure")
            if wire == _VARINT:
                yield number, wire, src.varint(end, message)
            elif wire in (_FIXED64, _FIXED32):
                width = 8 if wire == _FIXED64 else 4
                if src.pos + width > end:
                    raise FormatError(f"{message}: field {number} runs past its message", "onnx_structure")
                src.pos += width
            elif wire == _LEN:
                length = src.varint(end, message)
                payload_end = src.pos + length
                if payload_end > end:
                    raise FormatError(
                        f"{message}: field {number} claims {length:,} bytes at byte {src.pos:,}, "
                        f"past the end of its message at byte {end:,}",
                        "onnx_structure",
                    )
                yield number, wire, length
                src.pos = payload_end
            else:
                raise FormatError(
                    f"{message}: field {number} has unsupported wire type {wire} at byte {src.pos:,}",
                    "onnx_structure",
                )
        self.depth -= 1

    def _text(self, length: int, what: str) -> str:
        if length > MAX_STRING:
            raise FormatError(f"{what} is {length:,} bytes; the cap is {MAX_STRING:,}", "onnx_structure")
        return self.src.take(length).decode("utf-8", errors="replace")

    @staticmethod
    def _expect(wire: int, expected: int, what: str) -> None:
        if wire != expected:
            raise FormatError(f"{what} has wire type {wire}, not {expected}", "onnx_structure")

    # -- messages ---------------------------------------------------------------------------

    def _model(self, end: int) -> None:
        for number, wire, value in self._fields(end, "ModelProto"):
            if number == 1:
                self._expect(wire, _VARINT, "ir_version")
                self.ir_version = _signed(value)
            elif number in (2, 3):
                self._expect(wire, _LEN, "producer")
                text = self._text(value, "the producer")[:_SHOWN]
                if number == 2:
                    self.producer = text
                else:
                    self.producer_version = text
            elif number == 7:
                self._expect(wire, _LEN, "graph")
                self.graph_seen = True
                self._graph(self.src.pos + value, top=True)
            elif number == 8:
                self._expect(wire, _LEN, "opset_import")
                self._opset(self.src.pos + value)
            elif number == 20:
                self._expect(wire, _LEN, "training_info")
                self._subgraphs(self.src.pos + value, "TrainingInfoProto", {1, 2})
            elif number == 25:
                self._expect(wire, _LEN, "functions")
                self._function(self.src.pos + value)

    def _opset(self, end: int) -> None:
        domain, version = "", 0
        for number, wire, value in self._fields(end, "OperatorSetIdProto"):
            if number == 1 and wire == _LEN:
                domain = self._text(value, "an opset domain")[:_SHOWN]
            elif number == 2 and wire == _VARINT:
                version = _signed(value)
        if len(self.opsets) < KEPT_VALUES:
            self.opsets[domain] = version

    def _subgraphs(self, end: int, message: str, graph_fields: set[int]) -> None:
        for number, wire, value in self._fields(end, message):
            if number in graph_fields and wire == _LEN:
                self._graph(self.src.pos + value, top=False)

    def _function(self, end: int) -> None:
        for number, wire, value in self._fields(end, "FunctionProto"):
            if number == 7 and wire == _LEN:
                self._node(self.src.pos + value)

    def _graph(self, end: int, *, top: bool) -> None:
        for number, wire, value in self._fields(end, "GraphProto"):
            if wire != _LEN:
                continue
            payload_end = self.src.pos + value
            if number == 1:
                self.node_count += top
                self._node(payload_end)
            elif number == 2 and top:
                self.graph_name = self._text(value, "the graph name")[:_SHOWN]
            elif number == 5:
                self._tensor(payload_end, initializer=top)
            elif number == 15:
                self._sparse(payload_end)
            elif number in (11, 12) and top:
                self._graph_value(payload_end, output=number == 12)

    def _graph_value(self, end: int, *, output: bool) -> None:
        info = self._value_info(end)
        if output:
            self.output_count += 1
            if len(self.outputs) < KEPT_VALUES:
                self.outputs.append(info)
        else:
            self.input_count += 1
            if len(self.inputs) < KEPT_VALUES:
                self.inputs.append(info)

    def _sparse(self, end: int) -> None:
        for number, wire, value in self._fields(end, "SparseTensorProto"):
            if number in (1, 2) and wire == _LEN:
                self._tensor(self.src.pos + value, initializer=False)

    def _node(self, end: int) -> None:
        for number, wire, value in self._fields(end, "NodeProto"):
            if number == 5 and wire == _LEN:
                self._attribute(self.src.pos + value)

    def _attribute(self, end: int) -> None:
        # Attributes hold tensors (Constant nodes) and subgraphs (If, Loop), which may
        # point at external data too.
        for number, wire, value in self._fields(end, "AttributeProto"):
            if wire != _LEN:
                continue
            payload_end = self.src.pos + value
            if number in (5, 10):
                self._tensor(payload_end, initializer=False)
            elif number in (6, 11):
                self._graph(payload_end, top=False)
            elif number in (22, 23):
                self._sparse(payload_end)

    def _value_info(self, end: int) -> dict[str, Any]:
        info: dict[str, Any] = {"name": "", "dtype": None, "shape": None}
        for number, wire, value in self._fields(end, "ValueInfoProto"):
            if number == 1 and wire == _LEN:
                info["name"] = self._text(value, "a value name")[:_SHOWN]
            elif number == 2 and wire == _LEN:
                self._type(self.src.pos + value, info)
        return info

    def _type(self, end: int, info: dict[str, Any]) -> None:
        for number, wire, value in self._fields(end, "TypeProto"):
            if number == 1 and wire == _LEN:
                self._tensor_type(self.src.pos + value, info)
            elif number in _TYPE_KINDS:
                info["kind"] = _TYPE_KINDS[number]

    def _tensor_type(self, end: int, info: dict[str, Any]) -> None:
        for number, wire, value in self._fields(end, "TypeProto.Tensor"):
            if number == 1 and wire == _VARINT:
                code = _signed(value)
                info["dtype"] = DATA_TYPES[code][0] if code in DATA_TYPES else f"type_{code}"
            elif number == 2 and wire == _LEN:
                info["shape"] = self._shape(self.src.pos + value)

    def _shape(self, end: int) -> list[int | str | None]:
        dims: list[int | str | None] = []
        for number, wire, value in self._fields(end, "TensorShapeProto"):
            if number != 1 or wire != _LEN:
                continue
            if len(dims) >= MAX_DIMS:
                raise FormatError(f"a value's shape has more than {MAX_DIMS} dimensions", "tensor_shapes")
            dim: int | str | None = None
            for field, kind, item in self._fields(self.src.pos + value, "TensorShapeProto.Dimension"):
                if field == 1 and kind == _VARINT:
                    dim = _signed(item)
                elif field == 2 and kind == _LEN:
                    dim = self._text(item, "a symbolic dimension")[:_SHOWN]
            dims.append(dim)
        return dims

    def _tensor(self, end: int, *, initializer: bool) -> None:
        self.tensor_total += 1
        if self.tensor_total > MAX_TENSORS:
            raise FormatError(f"more than {MAX_TENSORS:,} tensors", "onnx_structure")
        name, dims, code = "", [], 1
        raw: int | None = None
        external: dict[str, str] = {}
        location_external = False
        for number, wire, value in self._fields(end, "TensorProto"):
            if number == 1:
                dims.extend(self._dims(wire, value, len(dims)))
            elif number == 2 and wire == _VARINT:
                code = _signed(value)
            elif number == 8 and wire == _LEN:
                name = self._text(value, "a tensor name")
            elif number == 9 and wire == _LEN:
                raw = value  # the payload's length only; its bytes are skipped
            elif number == 13 and wire == _LEN:
                if len(external) >= MAX_EXTERNAL_ENTRIES:
                    raise FormatError(
                        f"a tensor has more than {MAX_EXTERNAL_ENTRIES} external_data entries",
                        "onnx_structure",
                    )
                key, text = self._entry(self.src.pos + value)
                external[key] = text
            elif number == 14 and wire == _VARINT:
                location_external = value == _EXTERNAL
        self._tensor_found(name, tuple(dims), code, raw, external if location_external or external else None)
        if initializer:
            self._initializer(name, tuple(dims), code)

    def _dims(self, wire: int, value: int, have: int) -> list[int]:
        """TensorProto.dims, written one varint per field or packed into one payload."""
        if wire == _VARINT:
            found = [_signed(value)]
        else:
            self._expect(wire, _LEN, "dims")
            end, found = self.src.pos + value, []
            while self.src.pos < end and have + len(found) <= MAX_DIMS:
                found.append(_signed(self.src.varint(end, "TensorProto.dims")))
        if have + len(found) > MAX_DIMS:
            raise FormatError(f"a tensor has more than {MAX_DIMS} dimensions", "tensor_shapes")
        return found

    def _entry(self, end: int) -> tuple[str, str]:
        key = text = ""
        for number, wire, value in self._fields(end, "StringStringEntryProto"):
            if number == 1 and wire == _LEN:
                key = self._text(value, "an external_data key")
            elif number == 2 and wire == _LEN:
                text = self._text(value, "an external_data value")
        return key, text

    def _tensor_found(
        self,
        name: str,
        dims: tuple[int, ...],
        code: int,
        raw: int | None,
        external: dict[str, str] | None,
    ) -> None:
        shown = repr(name[:_SHOWN])
        if code not in DATA_TYPES:
            self.problems.add("dtype_known", f"tensor {shown} has unknown data type {code}")
        if any(d < 0 for d in dims):
            self.problems.add("tensor_shapes", f"tensor {shown} has a negative dimension {list(dims)}")
            return
        expected = _nbytes(dims, code)
        if raw is not None and expected is not None and raw != expected:
            self.problems.add(
                "initializer_sizes", f"tensor {shown} stores {raw:,} bytes; dims × dtype need {expected:,}"
            )
        if external is not None:
            self._external(shown, external, expected)

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
                f"{location[:_SHOWN]!r} ({known:,} bytes)",
            )
        elif expected is not None and length != expected:
            self.problems.add(
                "initializer_sizes",
                f"tensor {shown}: external data holds {length:,} bytes; needs {expected:,}",
            )

    def _side_file(self, location: str) -> int | str:
        """The size of an external data file, or why it is refused; refusals never touch the file."""
        shown = repr(location[:_SHOWN])
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
        self.references.append(relative.as_posix())
        return size

    def _initializer(self, name: str, dims: tuple[int, ...], code: int) -> None:
        self.initializers += 1
        if hash(name) in self.names:
            self.problems.add("tensor_names_unique", f"initializer name {name[:_SHOWN]!r} appears twice")
        self.names.add(hash(name))
        valid = all(d >= 0 for d in dims)
        elements = math.prod(dims) if valid else 0
        nbytes = (_nbytes(dims, code) or 0) if valid else 0
        dtype = DATA_TYPES[code][0] if code in DATA_TYPES else f"type_{code}"
        self.params += elements
        self.weights += nbytes
        self.dtypes[dtype] += 1
        self.kept_name_bytes += len(name)
        if len(self.tensors) < KEPT_TENSORS and self.kept_name_bytes <= _KEPT_NAME_BYTES:
            self.tensors.append(TensorInfo(name=name, dtype=dtype, shape=dims, nbytes=nbytes))

    def _summary(self) -> dict[str, Any]:
        if self.ir_version is None:
            return {}
        inputs = [value for value in self.inputs if hash(value["name"]) not in self.names]
        summary: dict[str, Any] = {
            "ir_version": self.ir_version,
            "opsets": dict(self.opsets),
            "producer": f"{self.producer} {self.producer_version}".strip(),
            "graph_name": self.graph_name,
            "inputs": inputs,
            "outputs": list(self.outputs),
            "node_count": self.node_count,
            "initializer_count": self.initializers,
            "initializer_bytes": self.weights,
        }
        if self.input_count > len(self.inputs) or self.output_count > len(self.outputs):
            summary["inputs_total"], summary["outputs_total"] = self.input_count, self.output_count
        if self.references:
            summary["external_data"] = list(self.references)
        return summary


def _nbytes(dims: tuple[int, ...], code: int) -> int | None:
    """Bytes of a tensor's data as raw_data packs it; None where that is not fixed (strings)."""
    if code not in DATA_TYPES or code == _STRING_TYPE:
        return None
    return -(-math.prod(dims) * DATA_TYPES[code][1] // 8)


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{name} × {count:,}" for name, count in counts.most_common()) or "none"
