"""ONNX header reader: a protobuf wire-format walk that never loads the weights.

An ONNX file is one protobuf ModelProto. The walk reads the fields that describe the model
(ir_version, opset_import, producer, the graph's inputs, outputs and initializer headers)
and seeks past everything else, tensor payloads (raw_data) included, so memory stays small
however big the file is. Nesting depth, string lengths and counts are capped, and every
length is checked against the bytes of its enclosing message before anything is read.

Initializers may keep their data in side files (external data). Their locations are paths
from the model's folder, and a hostile file can point them anywhere: each must be relative,
stay inside the model roots (symlinks followed), exist, and hold the bytes claimed.

Modules: reader (read: the walk turned into checks and a summary), model (what ModelProto,
GraphProto, TensorProto and their kin's fields mean), wire (the protobuf wire format),
tensors (each tensor checked against its data, side files included; the data type table).
"""

from apps.models.formats.onnx.reader import read
from apps.models.formats.onnx.tensors import DATA_TYPES

__all__ = ["DATA_TYPES", "read"]
