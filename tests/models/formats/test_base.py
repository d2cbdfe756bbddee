"""The shared reader types, format detection and read_header's promise never to raise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.models.domain.formats import FileFormat
from apps.models.domain.headers import Check, FileHeader
from apps.models.formats import detect, read_header, safetensors
from apps.models.formats.base import FormatError, inside_roots, model_file
from tests.models.formats import corpus


def _header(*checks: Check) -> FileHeader:
    return FileHeader(
        format="safetensors",
        metadata={},
        tensor_count=0,
        params_count=None,
        weights_bytes=0,
        dtypes={},
        checks=checks,
    )


def test_check_as_dict_is_a_validation_report_line() -> None:
    check = Check("header_size", "fail", "too short", "model.safetensors")

    assert check.as_dict() == {
        "check": "header_size",
        "status": "fail",
        "detail": "too short",
        "file": "model.safetensors",
    }


def test_header_failed_when_any_check_fails() -> None:
    assert _header(Check("a", "pass", ""), Check("b", "fail", "")).failed


def test_header_with_warnings_has_not_failed() -> None:
    assert not _header(Check("a", "pass", ""), Check("b", "warn", "")).failed


def test_format_error_names_the_readable_check_unless_told() -> None:
    assert FormatError("broken").check == "readable"
    assert FormatError("broken", "header_size").check == "header_size"


def test_inside_roots_accepts_a_file_under_a_root(tmp_path: Path) -> None:
    path = corpus.write_safetensors(tmp_path / "models" / "llama")

    assert inside_roots(path, [tmp_path / "other", tmp_path / "models"])


def test_inside_roots_refuses_a_sibling_folder_sharing_the_roots_prefix(tmp_path: Path) -> None:
    path = corpus.write_safetensors(tmp_path / "models-evil")

    assert not inside_roots(path, [tmp_path / "models"])


def test_inside_roots_refuses_dot_dot_out_of_the_root(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path, "outside.safetensors")
    (tmp_path / "models").mkdir()

    assert not inside_roots(tmp_path / "models" / ".." / "outside.safetensors", [tmp_path / "models"])


def test_inside_roots_follows_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    link = corpus.escaping_symlink(tmp_path / "models", tmp_path / "elsewhere")

    assert not inside_roots(link, [tmp_path / "models"])


def test_inside_roots_accepts_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    target = corpus.write_safetensors(tmp_path / "models" / "a")
    link = tmp_path / "models" / "b.safetensors"
    link.symlink_to(target)

    assert inside_roots(link, [tmp_path / "models"])


def test_inside_roots_accepts_files_under_a_symlinked_root(tmp_path: Path) -> None:
    path = corpus.write_safetensors(tmp_path / "disk" / "llama")
    (tmp_path / "models").symlink_to(tmp_path / "disk")

    assert inside_roots(tmp_path / "models" / "llama" / path.name, [tmp_path / "models"])


def test_inside_roots_refuses_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")

    assert not inside_roots(tmp_path / "a", [tmp_path / "models"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.safetensors", FileFormat.SAFETENSORS),
        ("model-00001-of-00002.safetensors", FileFormat.SAFETENSORS),
        ("llama-q4_k_m.gguf", FileFormat.GGUF),
        ("model.onnx", FileFormat.ONNX),
        ("pytorch_model.bin", FileFormat.PYTORCH),
        ("weights.PT", FileFormat.PYTORCH),
        ("model.pth", FileFormat.PYTORCH),
        ("last.ckpt", FileFormat.PYTORCH),
        ("config.json", FileFormat.CONFIG),
        ("model.safetensors.index.json", FileFormat.CONFIG),
        ("tokenizer.json", FileFormat.CONFIG),
        ("tokenizer.model", FileFormat.CONFIG),
        ("README.md", FileFormat.OTHER),
        ("model.onnx.data", FileFormat.OTHER),
    ],
)
def test_detect_names_a_files_format(tmp_path: Path, name: str, expected: FileFormat) -> None:
    path = corpus.write(tmp_path, name, b"\x80\x02N.")

    assert detect(path) == expected


def test_detect_sends_a_bin_with_gguf_magic_to_the_gguf_reader(tmp_path: Path) -> None:
    path = corpus.write(tmp_path, "ggml-model.bin", b"GGUF\x03\x00\x00\x00")

    assert detect(path) == FileFormat.GGUF


def test_detect_of_a_missing_file_does_not_raise(tmp_path: Path) -> None:
    assert detect(tmp_path / "gone.bin") == FileFormat.PYTORCH


def test_read_header_refuses_a_symlink_out_of_the_roots(tmp_path: Path) -> None:
    link = corpus.escaping_symlink(tmp_path / "models", tmp_path / "elsewhere")

    header = read_header(link, roots=[tmp_path / "models"])

    assert header.failed
    assert [(c.check, c.status) for c in header.checks] == [("inside_roots", "fail")]
    assert "outside the model roots" in header.checks[0].detail


@pytest.mark.timeout(10)
def test_read_header_does_not_open_a_file_outside_the_roots(tmp_path: Path) -> None:
    # Opening a FIFO with no writer blocks: returning at all proves it was never opened.
    fifo = tmp_path / "elsewhere" / "model.bin"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.bin").symlink_to(fifo)

    header = read_header(tmp_path / "models" / "model.bin", roots=[tmp_path / "models"])

    assert header.format == FileFormat.PYTORCH
    assert header.checks[0].check == "inside_roots"


def test_read_header_of_a_missing_file_fails_readable(tmp_path: Path) -> None:
    header = read_header(tmp_path / "gone.safetensors", roots=[tmp_path])

    assert header.checks == (Check("readable", "fail", "could not read the file: No such file or directory"),)


def test_read_header_of_a_folder_fails_readable(tmp_path: Path) -> None:
    (tmp_path / "odd.safetensors").mkdir()

    header = read_header(tmp_path / "odd.safetensors", roots=[tmp_path])

    assert header.failed
    assert header.checks[0].check == "readable"


def test_read_header_turns_a_reader_crash_into_a_fail_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(path: Path) -> FileHeader:
        raise RuntimeError("a bug")

    monkeypatch.setattr(safetensors, "read", crash)

    header = read_header(corpus.write_safetensors(tmp_path), roots=[tmp_path])

    assert header.checks == (Check("readable", "fail", "the header could not be parsed (RuntimeError)"),)


def test_read_header_of_an_index_lists_its_shards_as_references(tmp_path: Path) -> None:
    corpus.write_sharded(tmp_path, shards=2)

    header = read_header(tmp_path / "model.safetensors.index.json", roots=[tmp_path])

    assert header.format == FileFormat.CONFIG
    assert header.references == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert not header.failed


def test_read_header_of_a_broken_index_fails_json_object(tmp_path: Path) -> None:
    path = corpus.write(tmp_path, "model.safetensors.index.json", "[1, 2]")

    header = read_header(path, roots=[tmp_path])

    assert [(c.check, c.status) for c in header.checks] == [("json_object", "fail")]
    assert "not an object" in header.checks[0].detail


def test_read_header_leaves_plain_config_files_to_the_folder_reader(tmp_path: Path) -> None:
    path = corpus.write(tmp_path, "config.json", "not even JSON")

    header = read_header(path, roots=[tmp_path])

    assert header.format == FileFormat.CONFIG
    assert header.checks == ()


def test_read_header_of_another_file_reads_nothing_and_passes(tmp_path: Path) -> None:
    header = read_header(corpus.write(tmp_path, "README.md", "# llama"), roots=[tmp_path])

    assert header.format == FileFormat.OTHER
    assert header.checks == ()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("weights.bin", bytes(range(64)), None),  # an ONNX model's raw external data
        ("model.onnx.data", b"\x80\x02raw", None),  # no weights suffix: data whatever it holds
        ("weights.bin", b"\x80\x02}q\x00.", FileFormat.PYTORCH),  # a pickle
        ("weights.pt", b"PK\x03\x04rest", FileFormat.PYTORCH),  # torch.save's zip
        ("weights.bin", b"GGUF\x03\x00\x00\x00", FileFormat.GGUF),
        ("other.safetensors", b"anything", FileFormat.SAFETENSORS),
        ("other.onnx", b"anything", FileFormat.ONNX),
    ],
)
def test_a_model_file_is_told_from_raw_data_by_its_name_and_first_bytes(
    tmp_path: Path, name: str, content: bytes, expected: FileFormat | None
) -> None:
    assert model_file(corpus.write(tmp_path, name, content)) == expected
