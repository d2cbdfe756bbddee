"""The runtime-independent parts: what each kind serves, refusals before any library loads, error mapping."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from apps.serving.domain.errors import BadInput, ErrorClass, RuntimeMissing, classify
from apps.serving.runtimes import DeadlineExceeded, LoadSpec, load, runtime_available, tasks_for
from apps.serving.runtimes.base import check_deadline, check_generate, first_stop, serving_error
from tests.serving import doubles
from tests.serving.doubles import TextOnly

GOOD = {"prompt": "hi", "max_new_tokens": 4, "temperature": 0.7, "top_p": 0.9, "stop": [], "seed": 3}


@pytest.mark.parametrize(
    ("kind", "fmt", "tasks"),
    [
        ("causal-lm", "hf", {"generate", "embed"}),
        ("embedding", "hf", {"embed"}),
        ("adapter", "hf", {"generate", "embed"}),
        ("adapter", "safetensors", {"generate", "embed"}),
        ("onnx-graph", "onnx", {"tensors"}),
        ("causal-lm", "gguf", {"generate"}),
        ("embedding", "gguf", {"embed"}),
        ("classifier", "hf", set()),
        ("seq2seq-lm", "hf", set()),
        ("causal-lm", "safetensors", set()),
        ("", "pytorch", set()),
    ],
)
def test_tasks_for_names_the_requests_each_kind_and_format_answers(
    kind: str, fmt: str, tasks: set[str]
) -> None:
    assert tasks_for(kind, fmt) == tasks


def test_importing_the_package_imports_no_runtime_library() -> None:
    code = (
        "import sys, apps.serving.runtimes;"
        " print(sorted({'torch', 'transformers', 'onnxruntime', 'numpy'} & set(sys.modules)))"
    )

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


def test_runtime_available_says_which_package_gguf_lacks() -> None:
    pytest.importorskip("apps.serving.runtimes.gguf")
    if runtime_available("gguf")[0]:
        pytest.skip("llama-cpp-python is installed here")

    assert runtime_available("gguf") == (
        False,
        "GGUF needs llama-cpp-python, which is not installed on this worker",
    )


def test_runtime_available_refuses_a_format_without_a_runtime() -> None:
    assert runtime_available("tflite") == (False, "MOC has no runtime for tflite format on its own")


def test_runtime_available_for_bare_weights_asks_for_what_adapters_need() -> None:
    pytest.importorskip("peft")

    assert runtime_available("safetensors") == (True, "")


def test_load_refuses_a_bare_safetensors_file_for_want_of_an_architecture() -> None:
    spec = LoadSpec(path="/models/x.safetensors", format="safetensors", kind="causal-lm", device="cpu")

    with pytest.raises(BadInput, match="without an architecture"):
        load(spec)


def test_load_refuses_a_kind_moc_cannot_serve() -> None:
    with pytest.raises(BadInput, match="classifier"):
        load(LoadSpec(path="/models/c", format="hf", kind="classifier", device="cpu"))


def test_load_refuses_an_adapter_without_its_base() -> None:
    pytest.importorskip("peft")

    with pytest.raises(BadInput, match="an adapter needs its base loaded first"):
        load(LoadSpec(path="/models/lora", format="safetensors", kind="adapter", device="cpu"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"prompt": None}, "prompt"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": True}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"stop": "\n"}, "stop"),
        ({"stop": [3]}, "stop"),
        ({"stop": ["x"] * 17}, "stop"),
    ],
)
def test_check_generate_refuses_a_bad_parameter_by_name(change: dict[str, object], named: str) -> None:
    with pytest.raises(BadInput, match=named):
        check_generate(**{**GOOD, **change})


def test_check_generate_drops_empty_stop_strings() -> None:
    assert check_generate(**{**GOOD, "stop": ["", "END"]}) == ["END"]


def test_first_stop_finds_the_earliest_of_several_stops() -> None:
    assert first_stop("abc END def STOP", ["STOP", "END"]) == 4
    assert first_stop("abc", ["x"]) is None


def test_a_passed_deadline_raises_a_timeout_class_error() -> None:
    with pytest.raises(DeadlineExceeded) as caught:
        check_deadline(0.0, "after 3 of 9 tokens")

    assert classify(caught.value) == ErrorClass.TIMEOUT
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (MemoryError(), ErrorClass.OUT_OF_MEMORY),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), ErrorClass.OUT_OF_MEMORY),
        (ModuleNotFoundError("No module named 'sentencepiece'"), ErrorClass.RUNTIME_MISSING),
        (RuntimeError("PytorchStreamReader failed reading zip archive"), ErrorClass.CORRUPT_FILE),
        (
            ValueError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Protobuf parsing failed."),
            ErrorClass.CORRUPT_FILE,
        ),
        (OSError("config.json is not a valid JSON file"), ErrorClass.CORRUPT_FILE),
        (RuntimeError("Weights only load failed: Unsupported global"), ErrorClass.NOT_ALLOWED),
        (RuntimeError("something nobody foresaw"), ErrorClass.INTERNAL),
    ],
)
def test_serving_error_maps_library_failures_to_their_class(exc: Exception, error_class: ErrorClass) -> None:
    error = serving_error(exc, subject="loading demo")

    assert classify(error) == error_class
    assert str(error).startswith("loading demo ")


def test_serving_error_keeps_a_serving_error_as_it_is() -> None:
    error = RuntimeMissing("no llama")

    assert serving_error(error, subject="loading x") is error


COMPLETE = {
    **doubles.COMPLETE,
    "prompts": ["a", "b"],
    "n": 2,
    "seed": 10,
    "temperature": 1.0,
    "deadline": None,
}


def test_a_text_only_runtime_completes_each_prompts_choices_with_the_next_seeds() -> None:
    heard: list[tuple[Any, ...]] = []

    result = TextOnly().complete(**COMPLETE, on_delta=lambda *delta: heard.append(delta))

    assert [(c["index"], c["text"], c["finish_reason"]) for c in result["choices"]] == [
        (0, "a|10", "stop"),
        (1, "a|11", "stop"),
        (2, "b|10", "stop"),
        (3, "b|11", "stop"),
    ]
    assert heard == [(c["index"], c["text"], None, "stop") for c in result["choices"]]
    assert result["usage"] == {"prompt_tokens": 2, "completion_tokens": 16}


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"logprobs": 1}, "logprobs are not available for this runtime"),
        ({"echo": True}, "echo is not available for this runtime"),
        ({"prompts": [[1, 2]]}, r"prompts\[0\]: token-id prompts are not available"),
    ],
)
def test_a_text_only_runtime_refuses_what_its_library_cannot_give(
    change: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(BadInput, match=refusal):
        TextOnly().complete(**COMPLETE | change)


def test_a_text_only_runtime_chats_by_the_default_template_when_the_model_has_none() -> None:
    messages = [{"role": "user", "content": "hi"}]

    result = TextOnly().chat(
        messages=messages,
        max_tokens=None,
        temperature=0.0,
        top_p=1.0,
        n=1,
        stop=[],
        seed=1,
        logprobs=None,
        deadline=None,
    )

    assert result["choices"][0]["text"] == "<|user|>\nhi\n<|assistant|>\n|1"


def test_a_model_that_does_not_generate_says_so_for_completions() -> None:
    embedder = TextOnly()
    embedder.tasks = frozenset({"embed"})

    with pytest.raises(BadInput, match="answers embed requests, not generate"):
        embedder.complete(**COMPLETE)
