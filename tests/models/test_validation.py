"""A version's validation report, its problems, and the summary of its weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apps.models.domain.headers import Check, FileHeader, Layout
from apps.models.domain.validation import problems, summarise, version_report
from apps.models.formats import hf, read_header
from tests.models.formats import corpus
from tests.models.formats import corpus_gguf_onnx as gguf_onnx

SHA = "0" * 64


def _header(
    fmt: str,
    *checks: Check,
    params: int | None = None,
    weights: int = 0,
    dtypes: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    references: tuple[str, ...] = (),
    tensors: int | None = None,
    layout: Layout | None = None,
) -> FileHeader:
    return FileHeader(
        format=fmt,
        metadata=metadata or {},
        tensor_count=sum((dtypes or {}).values()) or 1 if tensors is None else tensors,
        params_count=params,
        weights_bytes=weights,
        dtypes=dtypes or {},
        checks=checks,
        references=references,
        layout=layout,
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
        "detail": "sha256 recorded for 1 file",
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


@pytest.mark.parametrize(
    ("names", "detail"), [(["a.gguf"], "1 weights file"), (["a.gguf", "b.gguf"], "2 weights files")]
)
def test_the_weights_line_counts_its_files_in_words(names: list[str], detail: str) -> None:
    report = version_report(files={n: _header("gguf") for n in names}, checksums=dict.fromkeys(names, SHA))

    assert {"check": "weights_present", "status": "pass", "detail": detail, "file": ""} in report


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


def test_a_real_folder_with_a_hostile_chat_template_is_invalid_saying_why(tmp_path: Path) -> None:
    names = corpus.write_hf_folder(tmp_path, chat_template=corpus.HOSTILE_TEMPLATE.replace("MARKER", "x"))
    files = {name: read_header(tmp_path / name, roots=[tmp_path]) for name in names}
    _, folder_checks, _ = hf.read_folder(tmp_path, names)

    report = version_report(files=files, folder_checks=folder_checks, checksums=dict.fromkeys(names, SHA))

    (problem,) = problems(report)
    assert "chat_template" in problem
    assert "reads the attribute '__globals__', a Python internal" in problem


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
        "config_check": None,
        "estimate_arch": {},
        "untrusted": "",
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


# Weights that hold nothing, and configs that do not describe their weights


def _zero_tensor_safetensors(folder: Path) -> Path:
    return corpus.write(folder, "empty.safetensors", corpus.raw_safetensors("{}", data_bytes=0))


def _zero_tensor_gguf(folder: Path) -> Path:
    return corpus.write(folder, "empty.gguf", gguf_onnx.gguf_file(kvs=gguf_onnx.tiny_gguf_kvs()))


@pytest.mark.parametrize("write", [_zero_tensor_safetensors, _zero_tensor_gguf], ids=["safetensors", "gguf"])
def test_a_weights_file_holding_no_tensors_fails(tmp_path: Path, write: Any) -> None:
    path = write(tmp_path)
    header = read_header(path, roots=[tmp_path])
    assert not header.failed  # a well-formed header: only that it lists nothing is wrong

    report = version_report(files={path.name: header}, checksums={path.name: SHA})

    assert f"{path.name}: tensors_present: the file holds no tensors: no weights to load" in problems(report)


def test_a_weights_file_with_tensors_passes_saying_how_many() -> None:
    report = version_report(files={"a.gguf": _header("gguf", tensors=11)}, checksums={"a.gguf": SHA})

    assert {"check": "tensors_present", "status": "pass", "detail": "11 tensors", "file": "a.gguf"} in report


def test_a_config_that_does_not_describe_the_folders_weights_fails_the_version(tmp_path: Path) -> None:
    inflated = {**corpus.LLAMA_CONFIG, "num_hidden_layers": 96, "hidden_size": 16384}
    names = corpus.write_hf_folder(tmp_path, config=inflated)
    files = {name: read_header(tmp_path / name, roots=[tmp_path]) for name in names}
    config, folder_checks, _ = hf.read_folder(tmp_path, names)

    report = version_report(
        files=files, folder_checks=folder_checks, checksums=dict.fromkeys(names, SHA), config=config
    )

    [failed] = problems(report)
    assert failed.startswith("config_matches_weights: config.json implies ")
    assert "(llama: 96 layers, hidden 16,384) but the weights hold 202,048 in 2 layers" in failed


def test_the_config_line_passes_for_the_corpus_folder_and_is_absent_without_an_architecture() -> None:
    layout = Layout(blocks=2, output_head=True, buffers=0)
    weights = {"model.safetensors": _header("safetensors", params=corpus.LLAMA_PARAMS, layout=layout)}
    config = hf._arch(corpus.LLAMA_CONFIG)

    with_config = version_report(files=weights, checksums={}, config=config)
    without = version_report(files=weights, checksums={})

    assert [line["status"] for line in with_config if line["check"] == "config_matches_weights"] == ["pass"]
    assert not [line for line in without if line["check"] == "config_matches_weights"]


def test_an_unknown_family_is_a_skip_line_not_a_problem() -> None:
    weights = {"model.safetensors": _header("safetensors", params=100)}

    report = version_report(
        files=weights, checksums={}, config={"model_type": "bert", "num_hidden_layers": 2}
    )

    [line] = [line for line in report if line["check"] == "config_matches_weights"]
    assert line["status"] == "skip"
    assert "parameters are not derived for 'bert' models" in line["detail"]
    assert problems(report) == []


def test_an_onnx_export_beside_a_config_is_not_compared_with_it() -> None:
    files = {"config.json": _header("config"), "model.onnx": _header("onnx", params=3)}

    check = summarise(files, config=hf._arch(corpus.LLAMA_CONFIG))["config_check"]

    assert (check.status, check.detail) == (
        "skip",
        "not compared: an ONNX graph's initializers are what its exporter kept, not the checkpoint's",
    )


def test_a_summary_says_why_an_architecture_is_not_to_be_trusted() -> None:
    weights = {"m.gguf": _header("gguf", params=10, metadata={"architecture": "gpt2", "block_count": 96,
                                                              "embedding_length": 16384, "vocab_size": 1024,
                                                              "context_length": 8192})}  # fmt: skip

    summary = summarise(weights)

    assert summary["config_check"].status == "fail"
    assert summary["config_check"].detail.startswith("the GGUF metadata implies ")
    assert (
        summary["untrusted"]
        == "the architecture does not describe the weights (config_matches_weights failed)"
    )


def test_report_details_show_control_characters_in_names_as_escapes() -> None:
    index = _header("config", references=("shard\n1.safetensors",))
    files = {"model.safetensors.index.json": index}

    report = version_report(files=files, checksums={})

    line = next(line for line in report if line["check"] == "references_present")
    assert line["detail"] == "referenced but not in the version: shard\\n1.safetensors"


# What the estimate may take from a config, and what says a file is quantised

# Llama 3.1 8B's sizes, under the names hf.read_folder gives them, and its safetensors' total.
LLAMA_8B = {
    "model_type": "llama",
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "context_length": 131072,
}
LLAMA_8B_PARAMS = 8_030_261_248


def _llama_weights(params: int, *, packed: int) -> dict[str, FileHeader]:
    layout = Layout(blocks=32, output_head=True, buffers=0, widths=(4096,), packed=packed)
    dtypes = {"I32": 224, "F16": 291} if packed else {"F16": 291}
    return {"model.safetensors": _header("safetensors", params=params, dtypes=dtypes, layout=layout)}


def test_a_config_claiming_quantisation_does_not_excuse_weights_that_are_not() -> None:
    # 8B claimed of weights holding a seventh of that in F16, which the config calls GPTQ.
    weights = _llama_weights(LLAMA_8B_PARAMS // 7, packed=0)

    summary = summarise(weights, config={**LLAMA_8B, "quantization": "gptq"})

    assert summary["config_check"].status == "fail"
    assert summary["estimate_arch"] is None


def test_weights_whose_integer_tensors_pack_the_values_pass_without_a_claim() -> None:
    held = LLAMA_8B_PARAMS // 8 + LLAMA_8B_PARAMS // 128  # GPTQ 4-bit: 8 values an int32, and scales
    weights = _llama_weights(held, packed=LLAMA_8B_PARAMS - held)

    summary = summarise(weights, config=LLAMA_8B)

    assert summary["config_check"].status == "pass"
    assert summary["estimate_arch"]["num_key_value_heads"] == 8


def test_a_skipped_comparison_leaves_the_estimate_nothing_of_the_config() -> None:
    files = {"config.json": _header("config"), "model.onnx": _header("onnx", params=3)}

    summary = summarise(files, config=hf._arch(corpus.LLAMA_CONFIG))

    assert summary["config_check"].status == "skip"
    assert summary["estimate_arch"] is None
    assert summary["untrusted"] == (
        "the weights do not confirm the architecture's sizes (config_matches_weights skipped)"
    )


def test_a_config_the_tensors_confirm_gives_the_estimate_its_layers_and_width_only() -> None:
    layout = Layout(blocks=2, output_head=True, buffers=0, widths=(64,), packed=0)
    weights = {"model.safetensors": _header("safetensors", params=corpus.LLAMA_PARAMS, layout=layout)}
    config = {**hf._arch(corpus.LLAMA_CONFIG), "model_type": "llama-custom", "head_dim": 4096}

    summary = summarise(weights, config=config)

    assert summary["config_check"].status == "pass"
    assert summary["estimate_arch"] == {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "context_length": 2048,
    }
    assert summary["untrusted"] == ""
