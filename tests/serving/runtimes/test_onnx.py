"""The demo ONNX export through onnxruntime on the cpu: raw tensors checked against the graph's signature."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.models import demo
from apps.serving.domain.errors import BadInput, CorruptFile, ErrorClass, classify
from apps.serving.runtimes import DeadlineExceeded, Loaded, LoadSpec, load

IDS = [[5, 17, 240, 3, 99], [1, 2, 3, 4, 5]]


@pytest.fixture(scope="module")
def graph(demo_models: Path) -> Iterator[Loaded]:
    loaded = load(LoadSpec(path=str(demo_models / demo.ONNX), format="onnx", kind="onnx-graph", device="cpu"))
    yield loaded
    loaded.close()


def run(graph: Loaded, inputs: Any) -> dict[str, Any]:
    return graph.tensors(inputs=inputs, deadline=None)["outputs"]


def test_the_graphs_logits_match_the_torch_models_for_the_same_ids(graph: Loaded, demo_models: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(demo_models / demo.BASE, local_files_only=True).eval()
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor(IDS)).logits

    logits = run(graph, {"input_ids": IDS})["logits"]

    assert (logits["dtype"], logits["shape"]) == ("float32", [2, 5, 1024])
    got = torch.tensor(logits["data"]).reshape(logits["shape"])
    assert torch.allclose(got, expected, atol=1e-4)


def test_a_tensor_given_as_dtype_shape_and_flat_data_equals_the_nested_list(graph: Loaded) -> None:
    flat = {"dtype": "int64", "shape": [2, 5], "data": [i for row in IDS for i in row]}

    assert run(graph, {"input_ids": flat}) == run(graph, {"input_ids": IDS})


def test_the_load_measures_at_least_the_file_and_describes_the_signature(
    graph: Loaded, demo_models: Path
) -> None:
    size = (demo_models / demo.ONNX / "model.onnx").stat().st_size

    assert graph.measured_bytes >= graph.weights_bytes == size
    assert graph.tasks == frozenset({"tensors"})
    facts = graph.describe()
    assert facts["providers"] == ["CPUExecutionProvider"]
    assert facts["inputs"] == [{"name": "input_ids", "dtype": "int64", "shape": "[batch, sequence]"}]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"input_ids": IDS, "attention_mask": IDS}, "no input 'attention_mask'; it takes input_ids"),
        ({}, "input 'input_ids' is missing"),
        (
            {"input_ids": {"dtype": "float32", "shape": [1, 2], "data": [1.0, 2.0]}},
            "takes int64, not float32",
        ),
        ({"input_ids": [[1.5, 2.0]]}, "takes int64; its values are not all of that kind"),
        ({"input_ids": [["a", "b"]]}, "takes int64; its values are not all of that kind"),
        ({"input_ids": [1, 2, 3]}, r"is rank 2 \[batch, sequence\]; got shape \[3\]"),
        ({"input_ids": [[1, 2], [3]]}, "ragged"),
        (
            {"input_ids": {"dtype": "int64", "shape": [2, 2], "data": [1, 2, 3]}},
            "holds 4 values but data has 3",
        ),
        ({"input_ids": {"dtype": "int64", "shape": [-1, 2], "data": []}}, "shape must be a list"),
        ({"input_ids": {"dtype": "int64", "shape": [4096, 4096], "data": []}}, "more than 4,194,304"),
        ({"input_ids": [[2**63]]}, "outside the range of int64"),
        ({"input_ids": "1 2 3"}, "must be a nested list or an object"),
        ([1, 2], "inputs must be an object"),
    ],
)
def test_inputs_that_do_not_fit_the_graph_are_refused_by_name(
    graph: Loaded, inputs: Any, message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        graph.tensors(inputs=inputs, deadline=None)


def test_outputs_beyond_the_cap_are_refused(graph: Loaded) -> None:
    ids = {"dtype": "int64", "shape": [40, 128], "data": [1] * (40 * 128)}

    with pytest.raises(BadInput, match="the outputs hold 5,242,880 values"):
        graph.tensors(inputs={"input_ids": ids}, deadline=None)


def test_an_id_beyond_the_vocabulary_is_the_callers_mistake(graph: Loaded) -> None:
    with pytest.raises(BadInput, match="the graph refused the inputs"):
        graph.tensors(inputs={"input_ids": [[5000]]}, deadline=None)


def test_a_passed_deadline_ends_the_request_with_a_timeout(graph: Loaded) -> None:
    with pytest.raises(DeadlineExceeded) as caught:
        graph.tensors(inputs={"input_ids": IDS}, deadline=time.monotonic() - 1)

    assert classify(caught.value) == ErrorClass.TIMEOUT


def test_an_onnx_graph_does_not_generate(graph: Loaded) -> None:
    with pytest.raises(BadInput, match="answers tensors requests, not generate"):
        graph.generate(
            prompt="x", max_new_tokens=1, temperature=0, top_p=1, stop=[], seed=None, deadline=None
        )


def test_a_truncated_onnx_file_is_refused_as_corrupt_naming_it(demo_models: Path, tmp_path: Path) -> None:
    data = (demo_models / demo.ONNX / "model.onnx").read_bytes()
    (tmp_path / "model.onnx").write_bytes(data[: len(data) // 2])

    with pytest.raises(CorruptFile, match="loading model.onnx"):
        load(LoadSpec(path=str(tmp_path), format="onnx", kind="onnx-graph", device="cpu"))


def test_closing_the_session_is_verified(demo_models: Path) -> None:
    loaded = load(LoadSpec(path=str(demo_models / demo.ONNX), format="onnx", kind="onnx-graph", device="cpu"))

    unloaded = loaded.close()

    assert unloaded.verified, unloaded.detail
