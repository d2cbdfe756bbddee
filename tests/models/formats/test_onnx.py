"""The ONNX header reader against onnx.load (without external data), and hostile files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx as reference
import pytest
from onnx import helper, numpy_helper

from apps.models.formats import onnx
from tests.models.formats.corpus_gguf_onnx import (
    Hostile,
    hostile_onnx,
    tiny_onnx_model,
    with_external,
    write_external_onnx,
    write_onnx,
)
from tests.models.formats.measure import PEAK_BYTES, SECONDS, fails, measured


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    root = tmp_path / "models"
    root.mkdir()
    return [root]


def _dim(dim: reference.TensorShapeProto.Dimension) -> int | str | None:
    if dim.HasField("dim_value"):
        return dim.dim_value
    return dim.dim_param if dim.HasField("dim_param") else None


def _value(info: reference.ValueInfoProto) -> tuple[str, str, list[int | str | None]]:
    tensor = info.type.tensor_type
    return info.name, onnx.DATA_TYPES[tensor.elem_type][0], [_dim(d) for d in tensor.shape.dim]


def test_tiny_model_passes_every_check(roots: list[Path]) -> None:
    path = write_onnx(tiny_onnx_model(), roots[0] / "tiny" / "model.onnx")

    header = onnx.read(path, roots=roots)

    assert [c.status for c in header.checks] == ["pass"] * len(header.checks)
    assert header.format == "onnx"
    assert header.references == ()


def test_header_matches_onnx_load(roots: list[Path]) -> None:
    path = write_onnx(tiny_onnx_model(), roots[0] / "tiny" / "model.onnx")
    model = reference.load(str(path), load_external_data=False)

    header = onnx.read(path, roots=roots)
    meta = header.metadata

    assert meta["ir_version"] == model.ir_version
    assert meta["opsets"] == {o.domain: o.version for o in model.opset_import}
    assert meta["producer"] == f"{model.producer_name} {model.producer_version}"
    assert meta["graph_name"] == model.graph.name
    assert meta["node_count"] == len(model.graph.node)
    assert [tuple(v.values()) for v in meta["inputs"]] == [_value(v) for v in model.graph.input]
    assert [tuple(v.values()) for v in meta["outputs"]] == [_value(v) for v in model.graph.output]
    assert meta["inputs"] == [{"name": "X", "dtype": "F32", "shape": ["batch", 4]}]
    initializers = model.graph.initializer
    assert [(t.name, t.shape) for t in header.tensors] == [(i.name, tuple(i.dims)) for i in initializers]
    assert header.params_count == sum(math.prod(i.dims) for i in initializers)
    assert header.weights_bytes == sum(len(i.raw_data) for i in initializers) == 12 * 4 + 3 * 2
    assert header.dtypes == {"F32": 1, "F16": 1}
    assert json.loads(json.dumps(meta)) == meta


def test_initializers_listed_as_inputs_are_not_shown_as_inputs(roots: list[Path]) -> None:
    model = tiny_onnx_model()
    model.graph.input.append(helper.make_tensor_value_info("W", reference.TensorProto.FLOAT, [4, 3]))
    path = write_onnx(model, roots[0] / "old-style.onnx")

    meta = onnx.read(path, roots=roots).metadata

    assert [value["name"] for value in meta["inputs"]] == ["X"]


def test_external_data_inside_the_roots_is_referenced_and_sized(roots: list[Path]) -> None:
    path = write_external_onnx(roots[0] / "ext")
    model = reference.load(str(path), load_external_data=False)

    header = onnx.read(path, roots=roots)

    assert fails(header) == {}
    assert header.references == ("weights.bin",)
    assert header.metadata["external_data"] == ["weights.bin"]
    assert [t.name for t in header.tensors] == [i.name for i in model.graph.initializer]
    assert header.weights_bytes == 12 * 4 + 3 * 2


def test_payloads_are_skipped_not_read(roots: list[Path]) -> None:
    big = numpy_helper.from_array(np.zeros((2048, 1024), dtype=np.float32), "big")
    model = tiny_onnx_model()
    model.graph.initializer.append(big)
    path = write_onnx(model, roots[0] / "big.onnx")

    header, seconds, peak = measured(lambda: onnx.read(path, roots=roots))

    assert fails(header) == {}
    assert header.weights_bytes == 12 * 4 + 3 * 2 + (8 << 20)
    assert peak < PEAK_BYTES  # the file is 8 MiB
    assert seconds < SECONDS


@pytest.mark.parametrize("hostile", hostile_onnx(), ids=lambda h: h.name)
def test_hostile_file_is_rejected_quickly_with_a_clear_reason(roots: list[Path], hostile: Hostile) -> None:
    path = roots[0] / "hostile.onnx"
    path.write_bytes(hostile.content)

    header, seconds, peak = measured(lambda: onnx.read(path, roots=roots))

    assert header.failed
    assert hostile.reason in fails(header).get(hostile.check, ""), fails(header)
    assert seconds < SECONDS
    assert peak < PEAK_BYTES
    assert max(header.weights_bytes, header.params_count or 0) < 1 << 63  # fits a BigIntegerField


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("../../etc/passwd", "climbs out of the model's folder"),
        ("sub/../../escape.bin", "climbs out of the model's folder"),
        ("/etc/passwd", "is not a relative path"),
        ("C:\\Windows\\win.ini", "is not a relative path"),
        ("\\\\server\\share\\w.bin", "is not a relative path"),
        ("missing.bin", "does not exist"),
        ("", "without a location"),
    ],
)
def test_external_data_that_escapes_or_is_missing_fails(
    roots: list[Path], location: str, reason: str
) -> None:
    path = write_onnx(with_external(location), roots[0] / "m" / "model.onnx")

    header = onnx.read(path, roots=roots)

    assert reason in fails(header)["external_data_inside_roots"]
    assert header.references == ()


def test_external_data_through_a_symlink_out_of_the_roots_fails(tmp_path: Path, roots: list[Path]) -> None:
    outside = tmp_path / "outside" / "secret.bin"
    outside.parent.mkdir()
    outside.write_bytes(bytes(48))
    folder = roots[0] / "m"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(outside)
    path = write_onnx(with_external("weights.bin"), folder / "model.onnx")

    header = onnx.read(path, roots=roots)

    assert "resolves outside the model roots" in fails(header)["external_data_inside_roots"]


def test_external_data_sibling_of_the_folder_inside_the_roots_is_accepted(roots: list[Path]) -> None:
    shared = roots[0] / "m" / "shared"
    shared.mkdir(parents=True)
    (shared / "w.bin").write_bytes(bytes(48))
    path = write_onnx(with_external("shared/w.bin"), roots[0] / "m" / "model.onnx")

    header = onnx.read(path, roots=roots)

    assert fails(header) == {}
    assert header.references == ("shared/w.bin",)


@pytest.mark.parametrize(
    ("offset", "length", "reason"),
    [(40, 48, "lie outside"), (0, 24, "holds 24 bytes; needs 48")],
)
def test_external_data_range_must_fit_its_file_and_the_tensor(
    roots: list[Path], offset: int, length: int, reason: str
) -> None:
    folder = roots[0] / "m"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(bytes(64))
    path = write_onnx(with_external("weights.bin", offset=offset, length=length), folder / "model.onnx")

    header = onnx.read(path, roots=roots)

    assert reason in fails(header)["initializer_sizes"]


def test_every_truncation_is_read_without_raising(roots: list[Path]) -> None:
    whole = tiny_onnx_model().SerializeToString()
    path = roots[0] / "cut.onnx"
    failed = 0

    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        failed += onnx.read(path, roots=roots).failed

    # Protobuf cannot tell a cut between two top-level fields from a shorter model; every
    # other cut must fail.
    assert failed >= len(whole) - 3


def test_a_folder_is_reported_unreadable_not_raised(roots: list[Path]) -> None:
    header = onnx.read(roots[0], roots=roots)

    assert fails(header).keys() == {"readable"}
