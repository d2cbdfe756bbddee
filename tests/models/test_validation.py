"""A version's validation report, its problems, and the summary of its weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apps.models.domain.headers import Check, FileHeader
from apps.models.domain.validation import problems, summarise, version_report
from apps.models.formats import hf, read_header
from tests.models.formats import corpus

SHA = "0" * 64


def _header(
    fmt: str,
    *checks: Check,
    params: int | None = None,
    weights: int = 0,
    dtypes: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    references: tuple[str, ...] = (),
) -> FileHeader:
    return FileHeader(
        format=fmt,
        metadata=metadata or {},
        tensor_count=sum((dtypes or {}).values()),
        params_count=params,
        weights_bytes=weights,
        dtypes=dtypes or {},
        checks=checks,
        references=references,
    )


def test_each_files_checks_are_reported_under_its_path() -> None:
    files = {
        "sub/model.safetensors": _header("safetensors", Check("header_size", "pass", "256 header bytes"))
    }

    report = version_report(files=files, checksums={"sub/model.safetensors": SHA})

    assert report[0] == {
        "check": "header_size",
        "status": "pass",
        "detail": "256 header bytes",
        "file": "sub/model.safetensors",
    }


def test_folder_checks_keep_their_own_file() -> None:
    files = {"model.safetensors": _header("safetensors")}
    folder = [Check("config_json", "fail", "not valid JSON", "config.json")]

    report = version_report(files=files, folder_checks=folder, checksums={})

    assert {
        "check": "config_json",
        "status": "fail",
        "detail": "not valid JSON",
        "file": "config.json",
    } in report


def test_files_not_hashed_yet_are_a_warning_naming_them() -> None:
    files = {"a.safetensors": _header("safetensors"), "b.safetensors": _header("safetensors")}

    report = version_report(files=files, checksums={"a.safetensors": SHA, "b.safetensors": None})

    line = next(line for line in report if line["check"] == "checksum")
    assert (line["status"], line["detail"]) == ("warn", "1 of 2 files not hashed yet: b.safetensors")


def test_every_file_hashed_passes_the_checksum_line() -> None:
    report = version_report(files={"a.gguf": _header("gguf")}, checksums={"a.gguf": SHA})

    assert {
        "check": "checksum",
        "status": "pass",
        "detail": "sha256 recorded for all 1 files",
        "file": "",
    } in report


def test_a_path_escaping_the_roots_fails_the_version() -> None:
    report = version_report(
        files={"a.gguf": _header("gguf")}, checksums={"a.gguf": SHA}, escaped=["link.gguf"]
    )

    assert problems(report) == [
        "link.gguf: inside_roots: resolves outside the model roots; refused, not read"
    ]


def test_a_version_without_weights_fails() -> None:
    report = version_report(files={"config.json": _header("config")}, checksums={"config.json": SHA})

    assert problems(report) == [
        "weights_present: no weights file (.safetensors, .gguf, .onnx or a pytorch file)"
    ]


def test_a_referenced_file_missing_from_the_version_fails() -> None:
    index = _header("config", references=("model-1.safetensors", "model-2.safetensors"))
    files = {"llama/model.safetensors.index.json": index, "llama/model-1.safetensors": _header("safetensors")}

    report = version_report(files=files, checksums=dict.fromkeys(files, SHA))

    assert problems(report) == [
        "llama/model.safetensors.index.json: references_present: "
        "referenced but not in the version: model-2.safetensors"
    ]


def test_problems_lists_only_fail_lines() -> None:
    report = [
        {"check": "a", "status": "pass", "detail": "fine", "file": ""},
        {"check": "b", "status": "warn", "detail": "hmm", "file": ""},
        {"check": "c", "status": "fail", "detail": "broken", "file": "x.gguf"},
    ]

    assert problems(report) == ["x.gguf: c: broken"]


def test_a_real_folder_with_a_hostile_pickle_is_invalid_and_the_report_is_json(tmp_path: Path) -> None:
    names = corpus.write_hf_folder(tmp_path)
    corpus.torch_zip_file(tmp_path, "pytorch_model.bin", corpus.shell_pickle(tmp_path / "MARKER"))
    names.append("pytorch_model.bin")
    files = {name: read_header(tmp_path / name, roots=[tmp_path]) for name in names}
    _, folder_checks, _ = hf.read_folder(tmp_path, names)

    report = version_report(files=files, folder_checks=folder_checks, checksums=dict.fromkeys(names, SHA))

    json.dumps(report)
    assert [p for p in problems(report) if "pickle_scan" in p] == [
        "pytorch_model.bin: pickle_scan: dangerous imports: posix.system; loading it would run code"
    ]
    assert len(problems(report)) == 1


def test_a_clean_real_folder_has_no_problems(tmp_path: Path) -> None:
    names = corpus.write_hf_folder(tmp_path)
    files = {name: read_header(tmp_path / name, roots=[tmp_path]) for name in names}
    _, folder_checks, _ = hf.read_folder(tmp_path, names)

    report = version_report(files=files, folder_checks=folder_checks, checksums=dict.fromkeys(names, SHA))

    assert problems(report) == []


# summarise


def test_a_hugging_face_folder_counts_its_safetensors_and_not_a_duplicate_pickle() -> None:
    files = {
        "config.json": _header("config"),
        "model-1.safetensors": _header("safetensors", params=10, weights=20, dtypes={"BF16": 2}),
        "model-2.safetensors": _header("safetensors", params=5, weights=10, dtypes={"BF16": 1, "F32": 1}),
        "pytorch_model.bin": _header("pytorch", weights=999),
    }

    summary = summarise(files)

    assert summary == {
        "format": "hf",
        "params_count": 15,
        "weights_bytes": 30,
        "tensor_count": 4,
        "dtypes": {"BF16": 3, "F32": 1},
        "weights_files": 2,
        "arch": {},
    }


def test_a_lone_safetensors_file_is_of_the_safetensors_format() -> None:
    assert summarise({"model.safetensors": _header("safetensors", params=1)})["format"] == "safetensors"


def test_an_onnx_export_with_a_config_stays_onnx() -> None:
    files = {"config.json": _header("config"), "model.onnx": _header("onnx", params=3)}

    assert summarise(files)["format"] == "onnx"


def test_pickle_weights_in_a_folder_with_a_config_are_a_hugging_face_folder() -> None:
    files = {"config.json": _header("config"), "pytorch_model.bin": _header("pytorch", weights=8)}

    summary = summarise(files)

    assert (summary["format"], summary["params_count"], summary["weights_bytes"]) == ("hf", None, 8)


def test_a_version_without_weights_has_no_format() -> None:
    assert summarise({"README.md": _header("other")})["format"] == ""


def test_gguf_metadata_becomes_the_architecture_under_config_names() -> None:
    metadata = {"architecture": "llama", "block_count": 32, "embedding_length": 4096, "head_count": 32}
    files = {"m.gguf": _header("gguf", metadata={**metadata, "head_count_kv": 8, "context_length": 8192})}

    assert summarise(files)["arch"] == {
        "model_type": "llama",
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "context_length": 8192,
    }


def test_a_folders_config_wins_over_gguf_metadata() -> None:
    files = {"m.gguf": _header("gguf", metadata={"block_count": 32, "context_length": 8192})}

    arch = summarise(files, config={"context_length": 4096, "architectures": ["LlamaForCausalLM"]})["arch"]

    assert arch == {"num_hidden_layers": 32, "context_length": 4096, "architectures": ["LlamaForCausalLM"]}
