"""Which files a scan makes versions of where an ONNX model shares a folder with other weights:
only the files its header names are its external data; everything else is reported as itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.models.models import ModelVersion
from tests.models.formats import corpus
from tests.models.formats import corpus_gguf_onnx as gguf_onnx
from tests.models.scans import scan_now, validated, version_at

pytestmark = pytest.mark.django_db


def _files(version: ModelVersion) -> list[str]:
    return sorted(version.files.values_list("path", flat=True))


def test_a_pickle_beside_an_unrelated_onnx_is_a_version_of_its_own(root: Path) -> None:
    gguf_onnx.write_onnx(gguf_onnx.tiny_onnx_model(), root / "exports" / "encoder.onnx")
    corpus.torch_zip_file(root / "exports", "classifier.bin", corpus.torch_like_pickle())

    scan = scan_now()

    assert (scan.new, scan.failed, scan.errors) == (2, 0, [])
    onnx = version_at(root / "exports" / "encoder.onnx")
    pickle = version_at(root / "exports" / "classifier.bin")
    assert (_files(onnx), onnx.format) == (["encoder.onnx"], ModelFormat.ONNX)
    assert (_files(pickle), pickle.format, pickle.model.name) == (["classifier.bin"], "pytorch", "classifier")


def test_only_the_files_an_onnx_names_join_it_and_a_rescan_keeps_them_apart(
    root: Path, reads: list[Path]
) -> None:
    gguf_onnx.write_external_onnx(root / "encoder", location="weights.bin")
    corpus.torch_zip_file(root / "encoder", "head.bin", corpus.torch_like_pickle())

    first = scan_now()
    assert sorted(reads) == [root / "encoder" / "head.bin", root / "encoder" / "model.onnx"]  # each read once
    second = scan_now()

    onnx = version_at(root / "encoder" / "model.onnx")
    assert _files(onnx) == ["model.onnx", "weights.bin"]
    assert _files(version_at(root / "encoder" / "head.bin")) == ["head.bin"]
    assert ModelVersion.objects.count() == 2
    assert (first.new, second.unchanged, second.new, second.removed) == (3, 3, 0, 0)


def test_external_data_in_a_subfolder_is_not_registered_as_a_version(root: Path) -> None:
    (root / "encoder" / "data").mkdir(parents=True)
    gguf_onnx.write_external_onnx(root / "encoder", location="data/weights.bin")

    scan_now()

    assert _files(ModelVersion.objects.get()) == ["data/weights.bin", "model.onnx"]


def _legacy_pickle(folder: Path, name: str) -> Path:
    return corpus.write(folder, name, corpus.torch_like_pickle())


HIDDEN = {
    "safetensors": lambda folder: corpus.write_safetensors(folder, "other.safetensors"),
    "onnx": lambda folder: gguf_onnx.write_onnx(gguf_onnx.tiny_onnx_model(), folder / "other.onnx"),
    "zip-pickle": lambda folder: corpus.torch_zip_file(folder, "other.bin", corpus.torch_like_pickle()),
    "legacy-pickle": lambda folder: _legacy_pickle(folder, "other.bin"),
}


@pytest.mark.parametrize("write", HIDDEN.values(), ids=HIDDEN.keys())
def test_an_onnx_naming_another_model_as_its_data_cannot_hide_it(root: Path, write: Any) -> None:
    folder = root / "exports"
    other = write(folder)
    gguf_onnx.write_onnx(gguf_onnx.with_external(other.name), folder / "hostile.onnx")

    scan_now()

    assert _files(version_at(other)) == [other.name]
    hostile = validated(version_at(folder / "hostile.onnx"))
    assert _files(hostile) == ["hostile.onnx"]
    assert hostile.validation_state == ValidationState.INVALID
    assert (
        f"hostile.onnx: external_data_inside_roots: tensor 'W': external data location {other.name!r}"
        " is a model of its own" in hostile.validation_error
    )


def test_external_data_named_like_a_checkpoint_but_holding_raw_bytes_is_still_attached(root: Path) -> None:
    gguf_onnx.write_external_onnx(root / "encoder", location="model.bin")

    scan_now()
    version = validated(ModelVersion.objects.get())

    assert _files(version) == ["model.bin", "model.onnx"]
    assert version.validation_state == ValidationState.VALID
