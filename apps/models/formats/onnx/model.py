"""What the fields of an ONNX model mean: ModelProto, GraphProto, NodeProto, TensorProto and kin.

The walk reads the fields that describe the model (ir_version, opset_import, producer, the
graph's inputs, outputs and initializer headers) and lets the wire walk (wire.py) seek past
everything else, tensor payloads (raw_data) included. Each tensor found is handed to
tensors.py to be checked against its data. Field numbers are those of onnx.proto.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.models.formats.base import FormatError
from apps.models.formats.onnx.tensors import (
    DATA_TYPES,
    SHOWN,
    TYPED_DATA_FIELDS,
    Stored,
    Tensors,
    entries,
)
from apps.models.formats.onnx.wire import LEN, VARINT, Source, expect, signed

MAX_DIMS = 64
MAX_TENSORS = 1_000_000
MAX_EXTERNAL_ENTRIES = 16
# Inputs and outputs kept for the pages.
KEPT_VALUES = 256
_EXTERNAL = 1
_TYPE_KINDS = {4: "sequence", 5: "map", 7: "opaque", 8: "sparse_tensor", 9: "optional"}


class Walker:
    """One walk of one model: what its messages said, and its tensors as found."""

    def __init__(self, source: Source, folder: Path, roots: Sequence[Path]) -> None:
        self.src = source
        self.tensors = Tensors(folder, roots)
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

    def model(self, end: int) -> None:
        """Walk the ModelProto that is the whole file, `end` bytes long."""
        for number, wire, value in self.src.fields(end, "ModelProto"):
            if number == 1:
                expect(wire, VARINT, "ir_version")
                self.ir_version = signed(value)
            elif number in (2, 3):
                expect(wire, LEN, "producer")
                text = self.src.text(value, "the producer")[:SHOWN]
                if number == 2:
                    self.producer = text
                else:
                    self.producer_version = text
            elif number == 7:
                expect(wire, LEN, "graph")
                self.graph_seen = True
                self._graph(self.src.pos + value, top=True)
            elif number == 8:
                expect(wire, LEN, "opset_import")
                self._opset(self.src.pos + value)
            elif number == 20:
                expect(wire, LEN, "training_info")
                self._subgraphs(self.src.pos + value, "TrainingInfoProto", {1, 2})
            elif number == 25:
                expect(wire, LEN, "functions")
                self._function(self.src.pos + value)

    def _opset(self, end: int) -> None:
        domain, version = "", 0
        for number, wire, value in self.src.fields(end, "OperatorSetIdProto"):
            if number == 1 and wire == LEN:
                domain = self.src.text(value, "an opset domain")[:SHOWN]
            elif number == 2 and wire == VARINT:
                version = signed(value)
        if len(self.opsets) < KEPT_VALUES:
            self.opsets[domain] = version

    def _subgraphs(self, end: int, message: str, graph_fields: set[int]) -> None:
        for number, wire, value in self.src.fields(end, message):
            if number in graph_fields and wire == LEN:
                self._graph(self.src.pos + value, top=False)

    def _function(self, end: int) -> None:
        for number, wire, value in self.src.fields(end, "FunctionProto"):
            if number == 7 and wire == LEN:
                self._node(self.src.pos + value)

    def _graph(self, end: int, *, top: bool) -> None:
        for number, wire, value in self.src.fields(end, "GraphProto"):
            if wire != LEN:
                continue
            payload_end = self.src.pos + value
            if number == 1:
                self.node_count += top
                self._node(payload_end)
            elif number == 2 and top:
                self.graph_name = self.src.text(value, "the graph name")[:SHOWN]
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
        for number, wire, value in self.src.fields(end, "SparseTensorProto"):
            if number in (1, 2) and wire == LEN:
                self._tensor(self.src.pos + value, initializer=False)

    def _node(self, end: int) -> None:
        for number, wire, value in self.src.fields(end, "NodeProto"):
            if number == 5 and wire == LEN:
                self._attribute(self.src.pos + value)

    def _attribute(self, end: int) -> None:
        # Attributes hold tensors (Constant nodes) and subgraphs (If, Loop), which may
        # point at external data too.
        for number, wire, value in self.src.fields(end, "AttributeProto"):
            if wire != LEN:
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
        for number, wire, value in self.src.fields(end, "ValueInfoProto"):
            if number == 1 and wire == LEN:
                info["name"] = self.src.text(value, "a value name")[:SHOWN]
            elif number == 2 and wire == LEN:
                self._type(self.src.pos + value, info)
        return info

    def _type(self, end: int, info: dict[str, Any]) -> None:
        for number, wire, value in self.src.fields(end, "TypeProto"):
            if number == 1 and wire == LEN:
                self._tensor_type(self.src.pos + value, info)
            elif number in _TYPE_KINDS:
                info["kind"] = _TYPE_KINDS[number]

    def _tensor_type(self, end: int, info: dict[str, Any]) -> None:
        for number, wire, value in self.src.fields(end, "TypeProto.Tensor"):
            if number == 1 and wire == VARINT:
                code = signed(value)
                info["dtype"] = DATA_TYPES[code][0] if code in DATA_TYPES else f"type_{code}"
            elif number == 2 and wire == LEN:
                info["shape"] = self._shape(self.src.pos + value)

    def _shape(self, end: int) -> list[int | str | None]:
        dims: list[int | str | None] = []
        for number, wire, value in self.src.fields(end, "TensorShapeProto"):
            if number != 1 or wire != LEN:
                continue
            if len(dims) >= MAX_DIMS:
                raise FormatError(f"a value's shape has more than {MAX_DIMS} dimensions", "tensor_shapes")
            dim: int | str | None = None
            for field, kind, item in self.src.fields(self.src.pos + value, "TensorShapeProto.Dimension"):
                if field == 1 and kind == VARINT:
                    dim = signed(item)
                elif field == 2 and kind == LEN:
                    dim = self.src.text(item, "a symbolic dimension")[:SHOWN]
            dims.append(dim)
        return dims

    def _tensor(self, end: int, *, initializer: bool) -> None:
        self.tensor_total += 1
        if self.tensor_total > MAX_TENSORS:
            raise FormatError(f"more than {MAX_TENSORS:,} tensors", "onnx_structure")
        # An absent data_type reads as 0, UNDEFINED, which dtype_known refuses.
        name, code = "", 0
        dims: list[int] = []
        raw: int | None = None
        inline: int | None = None
        external: dict[str, str] = {}
        location_external = False
        for number, wire, value in self.src.fields(end, "TensorProto"):
            if number in TYPED_DATA_FIELDS:
                inline = (inline or 0) + entries(number, wire, value)
            elif number == 1:
                dims.extend(self._dims(wire, value, len(dims)))
            elif number == 2 and wire == VARINT:
                code = signed(value)
            elif number == 8 and wire == LEN:
                name = self.src.text(value, "a tensor name")
            elif number == 9 and wire == LEN:
                raw = value  # the payload's length only; its bytes are skipped
            elif number == 13 and wire == LEN:
                if len(external) >= MAX_EXTERNAL_ENTRIES:
                    raise FormatError(
                        f"a tensor has more than {MAX_EXTERNAL_ENTRIES} external_data entries",
                        "onnx_structure",
                    )
                key, text = self._entry(self.src.pos + value)
                external[key] = text
            elif number == 14 and wire == VARINT:
                location_external = value == _EXTERNAL
        stored = Stored(raw, inline, external if location_external or external else None)
        self.tensors.found(name, tuple(dims), code, stored)
        if initializer:
            self.tensors.initializer(name, tuple(dims), code)

    def _dims(self, wire: int, value: int, have: int) -> list[int]:
        """TensorProto.dims, written one varint per field or packed into one payload."""
        if wire == VARINT:
            found = [signed(value)]
        else:
            expect(wire, LEN, "dims")
            end, found = self.src.pos + value, []
            while self.src.pos < end and have + len(found) <= MAX_DIMS:
                found.append(signed(self.src.varint(end, "TensorProto.dims")))
        if have + len(found) > MAX_DIMS:
            raise FormatError(f"a tensor has more than {MAX_DIMS} dimensions", "tensor_shapes")
        return found

    def _entry(self, end: int) -> tuple[str, str]:
        key = text = ""
        for number, wire, value in self.src.fields(end, "StringStringEntryProto"):
            if number == 1 and wire == LEN:
                key = self.src.text(value, "an external_data key")
            elif number == 2 and wire == LEN:
                text = self.src.text(value, "an external_data value")
        return key, text
