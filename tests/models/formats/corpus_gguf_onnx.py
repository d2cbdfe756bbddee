"""GGUF and ONNX files for the reader tests, valid and hostile, all made here at test time.

The GGUF writer is plain struct packing, so hostile files can say anything (a string of 2^63
bytes, billions of tensors); the valid ones are checked against the `gguf` package's own
reader in the tests. ONNX files are built with the `onnx` package, and hostile ones either
by editing its messages (escaping external data) or by writing protobuf bytes directly.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

# GGUF metadata value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR_LAYOUTS = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?"}
_SCALAR_LAYOUTS |= {U64: "Q", I64: "q", F64: "d"}

# ggml types the corpus uses -> (elements per block, bytes per block).
GGML_F32, GGML_F16, GGML_Q8_0, GGML_Q4_K = 0, 1, 8, 12
_BLOCKS = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_Q8_0: (32, 34), GGML_Q4_K: (256, 144)}

CHAT_TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def gguf_str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf_value(vtype: int, value: Any) -> bytes:
    """A value's bytes, without its type; an ARRAY value is (element type, items)."""
    if vtype == STRING:
        return gguf_str(value)
    if vtype == ARRAY:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(gguf_value(etype, item) for item in items)
    return struct.pack("<" + _SCALAR_LAYOUTS[vtype], value)


def gguf_kv(key: str | bytes, vtype: int, value: Any) -> bytes:
    return gguf_str(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)


@dataclass(frozen=True)
class GgufTensor:
    """A tensor info as GGUF stores it: dims innermost first; offset None packs it after the last."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int = GGML_F32
    offset: int | None = None


def tensor_nbytes(tensor: GgufTensor) -> int:
    """Its data's size; broken tensors (unknown type, negative or huge dims) get one to lie with."""
    block, size = _BLOCKS.get(tensor.ggml_type, (1, 4))
    count = 1
    for dim in tensor.dims:
        count *= dim
    return 0 if not 0 <= count <= 1 << 24 else count // block * size


def _pad(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def gguf_file(
    *,
    kvs: Sequence[bytes] = (),
    tensors: Sequence[GgufTensor] = (),
    version: int = 3,
    alignment: int = 32,
    tensor_count: int | None = None,
    kv_count: int | None = None,
) -> bytes:
    """A whole GGUF file; the counts and offsets may lie, and the tensor data is a pattern."""
    head = b"GGUF" + struct.pack(
        "<IQQ", version, _given(tensor_count, len(tensors)), _given(kv_count, len(kvs))
    )
    infos, end = [], 0
    for tensor in tensors:
        offset = end if tensor.offset is None else tensor.offset
        infos.append(
            gguf_str(tensor.name)
            + struct.pack(f"<I{len(tensor.dims)}q", len(tensor.dims), *tensor.dims)
            + struct.pack("<IQ", tensor.ggml_type, offset)
        )
        # The data section is as long as the tensors packed in order, whatever offsets they claim.
        end += _pad(tensor_nbytes(tensor), alignment)
    body = head + b"".join(kvs) + b"".join(infos)
    if not tensors:
        return body
    padding = b"\0" * (_pad(len(body), alignment) - len(body))
    return body + padding + bytes(i % 251 for i in range(end))


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


# One whole Llama block of the sizes tiny_gguf_kvs states (dims innermost first, as GGUF stores
# them), so the metadata describes the weights: 78,016 parameters, tied embeddings.
TINY_TENSORS = (
    GgufTensor("token_embd.weight", (64, 256), GGML_F16),
    GgufTensor("blk.0.attn_norm.weight", (64,), GGML_F32),
    GgufTensor("blk.0.attn_q.weight", (64, 64), GGML_Q8_0),
    GgufTensor("blk.0.attn_k.weight", (64, 32), GGML_Q8_0),
    GgufTensor("blk.0.attn_v.weight", (64, 32), GGML_Q8_0),
    GgufTensor("blk.0.attn_output.weight", (64, 64), GGML_Q8_0),
    GgufTensor("blk.0.ffn_norm.weight", (64,), GGML_F32),
    GgufTensor("blk.0.ffn_gate.weight", (64, 256), GGML_Q8_0),
    GgufTensor("blk.0.ffn_up.weight", (256, 64), GGML_Q4_K),
    GgufTensor("blk.0.ffn_down.weight", (256, 64), GGML_Q4_K),
    GgufTensor("output_norm.weight", (64,), GGML_F32),
)
TINY_PARAMS = 78_016
TINY_TYPES = {"F16": 1, "F32": 3, "Q8_0": 5, "Q4_K": 2}


def tiny_gguf_kvs(*, vocab: int = 256) -> list[bytes]:
    return [
        gguf_kv("general.architecture", STRING, "llama"),
        gguf_kv("general.name", STRING, "tiny-llama"),
        gguf_kv("general.file_type", U32, 7),
        gguf_kv("general.alignment", U32, 32),
        gguf_kv("llama.context_length", U32, 2048),
        gguf_kv("llama.block_count", U32, 1),
        gguf_kv("llama.embedding_length", U32, 64),
        gguf_kv("llama.feed_forward_length", U32, 256),
        gguf_kv("llama.attention.head_count", U32, 4),
        gguf_kv("llama.attention.head_count_kv", U32, 2),
        gguf_kv("llama.rope.freq_base", F32, 10000.0),
        gguf_kv("tokenizer.ggml.model", STRING, "gpt2"),
        gguf_kv("tokenizer.ggml.tokens", ARRAY, (STRING, [f"tok{i}" for i in range(vocab)])),
        gguf_kv("tokenizer.ggml.scores", ARRAY, (F32, [float(i) for i in range(vocab)])),
        gguf_kv("tokenizer.ggml.add_bos_token", BOOL, True),
        gguf_kv("tokenizer.chat_template", STRING, CHAT_TEMPLATE),
        gguf_kv("moc.test.nested", ARRAY, (ARRAY, [(I64, [1, 2]), (I64, [3])])),
        gguf_kv("moc.test.count", I64, -5),
        gguf_kv("moc.test.ratio", F64, 0.5),
    ]


def tiny_gguf() -> bytes:
    """A small, valid GGUF file: a llama-style header, a vocabulary and a block's tensors of four types."""
    return gguf_file(kvs=tiny_gguf_kvs(), tensors=TINY_TENSORS)


def _one_tensor(tensor: GgufTensor, **kwargs: Any) -> bytes:
    return gguf_file(kvs=[gguf_kv("general.architecture", STRING, "llama")], tensors=[tensor], **kwargs)


def _bogus_kv(tail: bytes) -> bytes:
    """A file whose only key, "bogus", is followed by the given type and value bytes."""
    return gguf_file(kvs=[gguf_str("bogus") + tail])


def _nested_arrays(depth: int) -> bytes:
    inner = struct.pack("<IQ", U8, 0)
    for _ in range(depth):
        inner = struct.pack("<IQ", ARRAY, 1) + inner
    return struct.pack("<I", ARRAY) + inner


@dataclass(frozen=True)
class Hostile:
    """A hostile or broken file, the check that must fail on it and words its reason must hold."""

    name: str
    content: bytes
    check: str
    reason: str


def hostile_gguf() -> list[Hostile]:
    tiny = tiny_gguf()
    f32 = GgufTensor("w", (32, 2), GGML_F32)
    return [
        Hostile("empty file", b"", "gguf_header", "file ends"),
        Hostile("wrong magic", b"GGML" + tiny[4:], "gguf_header", "not a GGUF file"),
        Hostile("version 1", gguf_file(version=1), "gguf_header", "version 1"),
        Hostile("unknown version", gguf_file(version=99), "gguf_header", "unknown GGUF version 99"),
        Hostile("big-endian", b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "gguf_header", "big-endian"),
        Hostile("2^63 tensors", gguf_file(tensor_count=2**63), "gguf_counts", "cap is 1,000,000"),
        Hostile("a billion keys", gguf_file(kv_count=10**9), "gguf_counts", "cap is 100,000"),
        Hostile("counts beyond the file", gguf_file(tensor_count=900_000), "gguf_counts", "are left"),
        Hostile(
            "key of 2^63 bytes",
            gguf_file(kv_count=1) + struct.pack("<Q", 2**63) + bytes(16),
            "gguf_metadata",
            "cap is 65,536",
        ),
        Hostile(
            "string value of 2^63 bytes",
            _bogus_kv(struct.pack("<IQ", STRING, 2**63)),
            "gguf_metadata",
            "cap is 1,048,576",
        ),
        Hostile(
            "array of four billion items",
            _bogus_kv(struct.pack("<IIQ", ARRAY, U8, 4_000_000_000)),
            "gguf_metadata",
            "cap is 10,000,000",
        ),
        Hostile(
            "array of nine million int64 in a tiny file",
            _bogus_kv(struct.pack("<IIQ", ARRAY, I64, 9_000_000)),
            "gguf_metadata",
            "file ends",
        ),
        Hostile(
            "array of five million strings in a tiny file",
            _bogus_kv(struct.pack("<IIQ", ARRAY, STRING, 5_000_000)),
            "gguf_metadata",
            "file ends",
        ),
        Hostile(
            "arrays nested ten deep",
            _bogus_kv(_nested_arrays(10)),
            "gguf_metadata",
            "deeper than 4",
        ),
        Hostile(
            "unknown value type",
            _bogus_kv(struct.pack("<I", 99) + b"\0" * 8),
            "gguf_metadata",
            "unknown type 99",
        ),
        Hostile(
            "duplicate key",
            gguf_file(kvs=[gguf_kv("general.name", STRING, "a"), gguf_kv("general.name", STRING, "b")]),
            "gguf_metadata",
            "appears twice",
        ),
        Hostile(
            "alignment not a power of two",
            gguf_file(kvs=[gguf_kv("general.alignment", U32, 24)], tensors=[f32], alignment=24),
            "gguf_alignment",
            "power of two",
        ),
        Hostile(
            "a thousand dimensions",
            gguf_file(kvs=[], tensor_count=1)[:24] + gguf_str("w") + struct.pack("<I", 1000) + b"\0" * 8000,
            "tensor_shapes",
            "1,000 dimensions",
        ),
        Hostile(
            "unknown ggml type",
            _one_tensor(GgufTensor("w", (32,), 77)),
            "dtype_known",
            "unknown ggml type 77",
        ),
        Hostile("negative dimension", _one_tensor(GgufTensor("w", (32, -4))), "tensor_shapes", "negative"),
        Hostile(
            "row not whole blocks",
            _one_tensor(GgufTensor("w", (33, 2), GGML_Q8_0)),
            "tensor_shapes",
            "not a multiple of the Q8_0 block of 32",
        ),
        Hostile(
            "elements past 64 bits",
            _one_tensor(GgufTensor("w", (1 << 40, 1 << 40))),
            "tensor_shapes",
            "more elements than fit in 64 bits",
        ),
        Hostile(
            "a tensor of 2^64 bytes",
            _one_tensor(GgufTensor("w", (1 << 31, 1 << 31))),
            "offsets_inside_file",
            "of data the file holds",
        ),
        Hostile(
            "offset past the end",
            _one_tensor(GgufTensor("w", (32, 2), GGML_F32, offset=1 << 40)),
            "offsets_inside_file",
            "of data the file holds",
        ),
        Hostile(
            "overlapping tensors",
            gguf_file(tensors=[GgufTensor("a", (32, 2)), GgufTensor("b", (32, 2), offset=0)]),
            "offsets_contiguous",
            "overlaps",
        ),
        Hostile(
            "gap between tensors",
            gguf_file(tensors=[GgufTensor("a", (32, 2)), GgufTensor("b", (32, 2), offset=1024)]),
            "offsets_contiguous",
            "gap of 768 bytes",
        ),
        Hostile(
            "duplicate tensor name",
            gguf_file(tensors=[GgufTensor("w", (32,)), GgufTensor("w", (32,))]),
            "tensor_names_unique",
            "appears twice",
        ),
        Hostile(
            "truncated in the tensor infos",
            tiny[: tiny.index(b"output_norm.weight")],
            "gguf_tensor_infos",
            "file ends",
        ),
        Hostile("truncated in the data", tiny[:-100], "offsets_inside_file", "of data the file holds"),
    ]


def write_gguf_corpus(folder: Path) -> dict[str, Hostile]:
    """Write every hostile GGUF file into the folder; file name -> what it is."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for index, hostile in enumerate(hostile_gguf()):
        name = f"hostile-{index:02d}.gguf"
        (folder / name).write_bytes(hostile.content)
        written[name] = hostile
    return written


# -- ONNX --------------------------------------------------------------------------------------


def tiny_onnx_model() -> onnx.ModelProto:
    """Y = relu(X @ W + B) with symbolic batch, plus a Constant node: a model onnx.checker accepts."""
    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "W")
    bias = numpy_helper.from_array(np.ones(3, dtype=np.float16), "B")
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["S"], value=scale),
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Cast", ["B"], ["B32"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["XW", "B32"], ["Z"]),
            helper.make_node("Mul", ["Z", "S"], ["Z2"]),
            helper.make_node("Relu", ["Z2"], ["Y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])],
        [weights, bias],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="moc-tests",
        producer_version="1.0",
    )
    onnx.checker.check_model(model)
    return model


def write_onnx(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def write_external_onnx(folder: Path, location: str = "weights.bin") -> Path:
    """The tiny model with all its initializers in one side file, the way onnx saves them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(
        tiny_onnx_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path


def with_external(location: str, *, offset: int = 0, length: int = 48) -> onnx.ModelProto:
    """The tiny model with W claiming its data lives at `location` (which may point anywhere)."""
    model = tiny_onnx_model()
    weights = model.graph.initializer[0]
    external_data_helper.set_external_data(weights, location, offset=offset, length=length)
    weights.ClearField("raw_data")
    return model


def pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def deep_onnx(levels: int) -> bytes:
    """Graphs inside If-style node attributes, `levels` deep: a parser without a depth cap recurses."""
    graph = b""
    for _ in range(levels):
        attribute = pb_field(1, b"then_branch") + pb_field(6, graph)
        graph = pb_field(1, pb_field(5, attribute))
    return pb_varint(1 << 3) + pb_varint(8) + pb_field(7, graph)


def _edited(edit: Callable[[onnx.ModelProto], None]) -> bytes:
    model = tiny_onnx_model()
    edit(model)
    return model.SerializeToString()


def _set_raw(model: onnx.ModelProto) -> None:
    model.graph.initializer[0].raw_data = b"\0" * 8


def _no_data(model: onnx.ModelProto) -> None:
    model.graph.initializer[0].ClearField("raw_data")


def _constant_dims(*dims: int) -> Callable[[onnx.ModelProto], None]:
    """The Constant node's one inline float, under dims that claim far more."""

    def edit(model: onnx.ModelProto) -> None:
        tensor = model.graph.node[0].attribute[0].t
        del tensor.dims[:]
        tensor.dims.extend(dims)

    return edit


def _negative_dim(model: onnx.ModelProto) -> None:
    model.graph.initializer[0].dims[0] = -4


def _unknown_type(model: onnx.ModelProto) -> None:
    model.graph.initializer[0].data_type = 99


def _duplicate_name(model: onnx.ModelProto) -> None:
    model.graph.initializer[1].name = "W"


def _no_opset(model: onnx.ModelProto) -> None:
    del model.opset_import[:]


def _escaping_constant(model: onnx.ModelProto) -> None:
    tensor = model.graph.node[0].attribute[0].t
    tensor.ClearField("float_data")
    tensor.raw_data = bytes(4)  # set_external_data insists on a raw_data field to replace
    external_data_helper.set_external_data(tensor, "../../../etc/passwd", offset=0, length=4)
    tensor.ClearField("raw_data")


def hostile_onnx() -> list[Hostile]:
    """Hostile ONNX files that need no side files; the external-data ones are written by the tests."""
    tiny = tiny_onnx_model().SerializeToString()
    return [
        Hostile("truncated in half", tiny[: len(tiny) // 2], "onnx_structure", "past the end"),
        Hostile("varint of eleven bytes", b"\x08" + b"\xff" * 11, "onnx_structure", "malformed varint"),
        Hostile("varint cut by the end of the file", b"\x08\xff\xff", "onnx_structure", "varint"),
        Hostile(
            "graph claiming a terabyte",
            b"\x08\x08" + pb_varint(7 << 3 | 2) + pb_varint(1 << 40) + b"\0" * 64,
            "onnx_structure",
            "claims 1,099,511,627,776 bytes",
        ),
        Hostile("group wire type", b"\x08\x08\x0b", "onnx_structure", "wire type 3"),
        Hostile("field number zero", b"\x08\x08\x00", "onnx_structure", "field number 0"),
        Hostile("graphs nested 500 deep", deep_onnx(500), "onnx_structure", "deeper than 64"),
        Hostile("text, not a model", b"just some text in a file\n", "onnx_structure", "ModelProto"),
        Hostile("no graph", pb_varint(1 << 3) + pb_varint(8), "onnx_model", "no graph"),
        Hostile("protobuf but no ir_version", pb_field(2, b"someone"), "onnx_model", "no ir_version"),
        Hostile("no opset", _edited(_no_opset), "onnx_opset", "no opset_import"),
        Hostile("raw_data shorter than dims", _edited(_set_raw), "initializer_sizes", "stores 8 bytes"),
        Hostile("negative dimension", _edited(_negative_dim), "tensor_shapes", "negative dimension"),
        Hostile("initializer without data", _edited(_no_data), "initializer_sizes", "stores none"),
        Hostile(
            "a billion values from one inline float",
            _edited(_constant_dims(1 << 30)),
            "initializer_sizes",
            "claims 1,073,741,824 values but stores at most 4",
        ),
        Hostile(
            "values past 64 bits",
            _edited(_constant_dims(1 << 40, 1 << 40)),
            "tensor_shapes",
            "more elements than fit in 64 bits",
        ),
        Hostile("unknown data type", _edited(_unknown_type), "dtype_known", "unknown data type 99"),
        Hostile(
            "duplicate initializer name", _edited(_duplicate_name), "tensor_names_unique", "appears twice"
        ),
        Hostile(
            "Constant node with escaping external data",
            _edited(_escaping_constant),
            "external_data_inside_roots",
            "climbs out",
        ),
    ]
