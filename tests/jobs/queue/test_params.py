"""domain.params.parse: each kind's parameters checked against types, ranges and what they name,
without a database."""

from __future__ import annotations

from typing import Any

import pytest

from apps.jobs.domain import params
from apps.jobs.domain.params import DatasetFacts, Facts, FineTuneParams, Method, VersionFacts

BASE = VersionFacts(
    id=1,
    label="demo-gpt2 v1",
    kind="causal-lm",
    format="hf",
    usable=None,
    hidden_size=64,
    context=256,
    params_count=1_000_000,
)
GGUF = VersionFacts(
    id=2,
    label="llama v1",
    kind="causal-lm",
    format="gguf",
    usable=None,
    hidden_size=64,
    context=256,
    params_count=1,
)
ARCHIVED = VersionFacts(
    id=3,
    label="old v1",
    kind="causal-lm",
    format="hf",
    usable="old v1 is archived.",
    hidden_size=64,
    context=256,
    params_count=1,
)
PICKLED = VersionFacts(
    id=4,
    label="pkl v1",
    kind="",
    format="pytorch",
    usable=None,
    hidden_size=None,
    context=None,
    params_count=None,
    has_pickle=True,
)
VALID = DatasetFacts(id=10, name="status", state="valid", rows=100, errors=0)
PENDING = DatasetFacts(id=11, name="fresh", state="pending", rows=0, errors=0)
INVALID = DatasetFacts(id=12, name="broken", state="invalid", rows=50, errors=3)
FACTS = Facts(
    versions={v.id: v for v in (BASE, GGUF, ARCHIVED, PICKLED)},
    datasets={d.id: d for d in (VALID, PENDING, INVALID)},
)


def fine_tune(**raw: Any) -> tuple[Any, dict[str, str]]:
    return params.parse("fine_tune", {"base_version": 1, "dataset": 10, **raw}, FACTS)


def test_a_fine_tune_with_only_its_base_and_dataset_gets_every_default() -> None:
    parsed, problems = fine_tune()

    assert problems == {}
    assert parsed == FineTuneParams(base_version=1, dataset=10)


def test_a_lora_fine_tune_keeps_what_was_given() -> None:
    parsed, problems = fine_tune(method="lora", lora_rank=16, batch_size=4, grad_accum=2, learning_rate=1e-3)

    assert problems == {}
    assert (parsed.method, parsed.lora_rank, parsed.batch_size, parsed.grad_accum) == (Method.LORA, 16, 4, 2)


@pytest.mark.parametrize(
    ("raw", "name", "words"),
    [
        ({"base_version": 99}, "base_version", "No model version has id 99"),
        ({"base_version": 3}, "base_version", "archived"),
        (
            {"base_version": 2},
            "base_version",
            "fine-tuning takes a causal LM in a Hugging Face",
        ),
        ({"base_version": "one"}, "base_version", "An id"),
        ({"dataset": 99}, "dataset", "No dataset has id 99"),
        ({"dataset": 11}, "dataset", "fresh is not validated yet"),
        ({"dataset": 12}, "dataset", "broken failed validation (3 bad rows)"),
        ({"method": "lora", "lora_rank": 65}, "lora_rank", "above demo-gpt2 v1's width (hidden size 64)"),
        ({"seq_len": 512}, "seq_len", "more than demo-gpt2 v1's context of 256"),
        ({"max_steps": 0, "epochs": 0}, "max_steps", "no step"),
        ({"batch_size": 0}, "batch_size", "from 1"),
        ({"batch_size": True}, "batch_size", "whole number"),
        ({"grad_accum": 2.5}, "grad_accum", "whole number"),
        ({"learning_rate": 0}, "learning_rate", "above 0"),
        ({"method": "qlora"}, "method", "One of full, lora"),
        ({"output_name": "a/b"}, "output_name", "Use letters, digits"),
        ({"warmup": 10}, "warmup", "takes no such parameter"),
    ],
)
def test_a_bad_fine_tune_parameter_is_named_with_why(raw: dict[str, Any], name: str, words: str) -> None:
    parsed, problems = fine_tune(**raw)

    assert parsed is None
    assert words in problems[name]


def test_a_missing_base_and_dataset_are_both_named() -> None:
    _, problems = params.parse("fine_tune", {}, Facts())

    assert set(problems) == {"base_version", "dataset"}


def test_a_lora_rank_is_not_bound_by_the_width_of_a_full_fine_tune() -> None:
    assert fine_tune(lora_rank=65)[1] == {}


def test_an_evaluation_needs_a_dataset_or_golden_pairs() -> None:
    _, problems = params.parse("evaluate", {"version": 1}, FACTS)

    assert "nothing to evaluate" in problems["dataset"]


def test_an_evaluation_reads_golden_pairs_as_lists_or_objects() -> None:
    parsed, problems = params.parse(
        "evaluate", {"version": 1, "golden": [["2+2=", "4"], {"prompt": "hi", "expected": "hello"}]}, FACTS
    )

    assert problems == {}
    assert parsed.golden == (("2+2=", "4"), ("hi", "hello"))


def test_a_golden_pair_without_a_prompt_is_named_by_its_number() -> None:
    _, problems = params.parse("evaluate", {"version": 1, "golden": [["a", "b"], ["", "c"]]}, FACTS)

    assert "Pair 2" in problems["golden"]


def test_a_benchmark_prompt_and_its_new_tokens_must_fit_the_context() -> None:
    _, problems = params.parse(
        "benchmark", {"version": 1, "prompt_lengths": [16, 250], "new_tokens": 32}, FACTS
    )

    assert "more than demo-gpt2 v1's context of 256" in problems["prompt_lengths"]


def test_a_conversion_needs_a_pickle_checkpoint() -> None:
    assert params.parse("convert", {"version": 4}, FACTS)[1] == {}
    assert "no pickle checkpoint" in params.parse("convert", {"version": 1}, FACTS)[1]["version"]


def test_the_selftest_keeps_its_own_rules_through_the_one_entry_point() -> None:
    assert params.parse("selftest", {"checks": ["redis"]}, Facts()) == ({"checks": ["redis"]}, {})
    assert "checks" in params.parse("selftest", {"checks": ["disk"]}, Facts())[1]


def test_parameters_that_are_not_an_object_are_refused_as_a_whole() -> None:
    assert params.parse("fine_tune", [1, 2], FACTS) == (None, {"": "Parameters must be a JSON object."})


def test_stored_parameters_read_back_as_the_same_dataclass() -> None:
    parsed, _ = params.parse("benchmark", {"version": 1, "batch_sizes": [4, 1]}, FACTS)

    stored = params.as_stored(parsed)

    assert stored["batch_sizes"] == [1, 4]
    assert params.from_stored("benchmark", stored) == parsed


def test_stored_parameters_pass_the_rules_again_as_a_retry_sends_them() -> None:
    parsed, _ = fine_tune(method="lora")

    assert params.parse("fine_tune", params.as_stored(parsed), FACTS) == (parsed, {})


def test_only_the_named_versions_and_datasets_are_looked_up() -> None:
    assert params.facts_needed("fine_tune", {"base_version": 1, "dataset": 10, "seed": 3}) == ({1}, {10})
    assert params.facts_needed("evaluate", {"version": 5}) == ({5}, set())
    assert params.facts_needed("selftest", {"checks": []}) == (set(), set())


SHORT = Facts(
    versions={9: VersionFacts(9, "tiny v1", "causal-lm", "hf", None, 64, 128, 1_000)},
    datasets={d.id: d for d in (VALID,)},
)


def test_left_out_the_defaults_fit_a_model_with_a_short_context() -> None:
    """The demo LM's context is 128: an evaluation (default seq_len 256) and a benchmark (default
    prompts up to 128 tokens + 32 new) asked with their defaults are not refused for it."""
    evaluate, problems = params.parse("evaluate", {"version": 9, "dataset": 10}, SHORT)
    assert problems == {}
    assert evaluate.seq_len == 128

    benchmark, problems = params.parse("benchmark", {"version": 9}, SHORT)
    assert problems == {}
    assert max(benchmark.prompt_lengths) + benchmark.new_tokens <= 128

    fine_tune, problems = params.parse("fine_tune", {"base_version": 9, "dataset": 10}, SHORT)
    assert problems == {}
    assert fine_tune.seq_len <= 128


def test_a_sequence_length_asked_for_is_still_held_to_the_context() -> None:
    _, problems = params.parse("evaluate", {"version": 9, "dataset": 10, "seq_len": 256}, SHORT)

    assert "more than tiny v1's context of 128" in problems["seq_len"]
