"""The evaluate and benchmark runners on the real demo LM, run in-process through execution.job_execute
(on this machine's CPU: a worker that serves no device)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from apps.jobs import execution
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.measuring import timing
from apps.jobs.models import Dataset, Job
from apps.models import demo
from apps.models.domain.formats import ModelFormat
from apps.models.models import ModelVersion
from apps.serving.domain.probe import PROBE_NEW_TOKENS, PROBE_PROMPT
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

PROMPT = "The"


def run(job: Job) -> Job:
    """Run a device kind's job as its worker does once the dispatcher sent it (task t1)."""
    Job.objects.filter(pk=job.pk).update(task_id="t1")
    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")
    job.refresh_from_db()
    return job


@pytest.fixture
def lm(demo_models: Path) -> ModelVersion:
    return ModelVersionFactory(path=str(demo_models / demo.BASE), format=ModelFormat.HF, kind="causal-lm")


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    """Prompt/completion rows in the demo corpus's own words (one row per line, at most 24)."""
    lines = [line.strip() for line in demo.CORPUS.read_text().splitlines() if line.strip()][:24]
    rows = [
        {"prompt": " ".join(line.split()[:3]), "completion": " " + " ".join(line.split()[3:]) or "."}
        for line in lines
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return Dataset.objects.create(
        name="corpus-pc",
        root=str(tmp_path),
        path="corpus.jsonl",
        format="jsonl",
        shape="prompt_completion",
        rows=len(rows),
        state="valid",
        sha256="ab" * 32,
        eval_share=0.25,
        split_seed=3,
    )


def greedy(demo_models: Path, prompt: str, new_tokens: int) -> str:
    """The demo LM's greedy continuation, by transformers' own generate (not the runner's code)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = demo_models / demo.BASE
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(
        **ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id
    )
    return str(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))


def test_evaluate_gives_a_finite_loss_and_perplexity_and_stores_them_on_the_version(
    lm: ModelVersion, dataset: Dataset
) -> None:
    job = run(
        JobFactory(kind=JobKind.EVALUATE, params={"version": lm.pk, "dataset": dataset.pk, "split": "all"})
    )

    assert job.state == JobState.SUCCEEDED, job.error
    loss, perplexity = job.result["loss"], job.result["perplexity"]
    assert 0 < loss < math.log(demo.lm.VOCAB), "the trained demo LM beats guessing over its vocabulary"
    assert perplexity == pytest.approx(math.exp(loss), rel=1e-4)
    assert job.result["rows"] == dataset.rows
    assert job.result["tokens"] > dataset.rows
    lm.refresh_from_db()
    stored = lm.evaluations[f"dataset:{dataset.name}:all"]
    assert (stored["loss"], stored["perplexity"], stored["job"]) == (loss, perplexity, job.pk)
    assert (stored["split"], stored["dataset"], stored["dataset_id"]) == ("all", dataset.name, dataset.pk)
    assert (stored["sha256"], stored["eval_share"], stored["split_seed"]) == ("ab" * 32, 0.25, 3)
    assert list(job.metrics.filter(name="eval_loss").values_list("value", flat=True)) == [pytest.approx(loss)]
    assert (job.step, job.total_steps) == (job.total_steps, math.ceil(dataset.rows / 8))  # batches of 8


def test_exact_match_counts_right_and_wrong_answers(lm: ModelVersion, demo_models: Path) -> None:
    answer = greedy(demo_models, PROMPT, 6)
    golden = [[PROMPT, f"  {answer.strip()}\n"], [PROMPT, "no model says this"]]

    job = run(
        JobFactory(kind=JobKind.EVALUATE, params={"version": lm.pk, "golden": golden, "max_new_tokens": 6})
    )

    assert job.state == JobState.SUCCEEDED, job.error
    assert job.result["exact_match"] == 0.5
    assert [(g["ok"], g["got"]) for g in job.result["golden"]] == [(True, answer), (False, answer)]
    lm.refresh_from_db()
    sha256 = hashlib.sha256(
        json.dumps(golden, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    stored = lm.evaluations[f"golden:{sha256[:8]}"]
    assert {k: stored[k] for k in ("exact_match", "right", "of", "golden_sha256")} == {
        "exact_match": 0.5,
        "right": 1,
        "of": 2,
        "golden_sha256": sha256,
    }


def test_a_dataset_named_golden_keeps_both_its_loss_and_the_golden_exact_match(
    lm: ModelVersion, dataset: Dataset
) -> None:
    Dataset.objects.filter(pk=dataset.pk).update(name="golden")
    golden = [[PROMPT, "no model says this"]]
    params = {"version": lm.pk, "dataset": dataset.pk, "split": "all", "golden": golden, "max_new_tokens": 4}

    job = run(JobFactory(kind=JobKind.EVALUATE, params=params))

    assert job.state == JobState.SUCCEEDED, job.error
    lm.refresh_from_db()
    golden_keys = [key for key in lm.evaluations if key.startswith("golden:")]
    assert len(golden_keys) == 1
    assert sorted(lm.evaluations) == ["dataset:golden:all", *golden_keys]
    assert lm.evaluations["dataset:golden:all"]["loss"] == job.result["loss"] > 0
    assert lm.evaluations[golden_keys[0]]["exact_match"] == 0.0


def test_an_evaluation_on_another_split_stands_beside_the_first(lm: ModelVersion, dataset: Dataset) -> None:
    for split in ("eval", "train"):
        job = run(
            JobFactory(
                kind=JobKind.EVALUATE, params={"version": lm.pk, "dataset": dataset.pk, "split": split}
            )
        )
        assert job.state == JobState.SUCCEEDED, job.error

    lm.refresh_from_db()
    assert sorted(lm.evaluations) == ["dataset:corpus-pc:eval", "dataset:corpus-pc:train"]
    eval_rows, train_rows = (lm.evaluations[f"dataset:corpus-pc:{s}"]["rows"] for s in ("eval", "train"))
    assert (eval_rows + train_rows, eval_rows > 0, train_rows > 0) == (dataset.rows, True, True)


def test_evaluate_names_a_bad_row_that_appeared_after_validation(lm: ModelVersion, dataset: Dataset) -> None:
    with open(dataset.file_path, "a") as handle:
        handle.write("this is not json\n")

    job = run(
        JobFactory(kind=JobKind.EVALUATE, params={"version": lm.pk, "dataset": dataset.pk, "split": "all"})
    )

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.BAD_DATA)
    assert f"row {dataset.rows + 1}: not JSON" in job.error


BASELINE_KEYS = {
    "at",
    "job",
    "device",
    "load_s",
    "memory_bytes",
    "memory_meter",
    "runs",
    "ttft_ms_p50",
    "token_ms_p50",
    "latency_ms_p50",
    "latency_ms_p99",
    "single",
    "probe",
}
RUN_KEYS = {
    "batch",
    "prompt_tokens",
    "new_tokens",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "token_ms_p50",
    "token_ms_p99",
    "tokens_per_s",
}


def test_benchmark_stores_the_baseline_with_the_documented_keys(lm: ModelVersion) -> None:
    params = {
        "version": lm.pk,
        "batch_sizes": [1, 2],
        "prompt_lengths": [8, 500],
        "new_tokens": 8,
        "repeats": 3,
    }

    job = run(JobFactory(kind=JobKind.BENCHMARK, params=params))

    assert job.state == JobState.SUCCEEDED, job.error
    lm.refresh_from_db()
    baseline: dict[str, Any] = lm.benchmark
    assert set(baseline) >= BASELINE_KEYS
    assert baseline["job"] == job.pk
    assert baseline["device"] == {"label": baseline["device"]["label"], "kind": "cpu", "simulated": False}
    assert (baseline["memory_meter"], baseline["peak_meter"]) == ("rss", timing.RSS_PEAK)
    assert baseline["memory_bytes"] > 0
    assert baseline["load_s"] > 0
    runs = baseline["runs"]
    assert all(set(r) >= RUN_KEYS for r in runs)
    # A prompt longer than the context leaves room for is cut to what fits (128 - 8 new tokens).
    assert [(r["batch"], r["prompt_tokens"]) for r in runs] == [(1, 8), (1, 120), (2, 8), (2, 120)]
    first = runs[0]
    assert 0 < first["ttft_ms_p50"] <= first["latency_ms_p50"]
    assert baseline["latency_ms_p50"] == first["latency_ms_p50"]
    assert baseline["single"] == {"batch": 1, "prompt_tokens": 8}
    probe = baseline["probe"]
    assert (probe["prompt"], probe["max_new_tokens"]) == (PROBE_PROMPT, PROBE_NEW_TOKENS)
    assert 0 < probe["ms_p50"] <= probe["ms_p99"]
    assert baseline["latency_ms_p99"] >= baseline["latency_ms_p50"]
    assert all(r["tokens_per_s"] > 0 and r["token_ms_p50"] > 0 for r in runs)
    assert baseline["peak_memory_bytes"] >= baseline["memory_bytes"]
    assert baseline["unload"]["verified"], baseline["unload"]
    assert job.result["latency_ms_p50"] == baseline["latency_ms_p50"]


def test_percentiles_interpolate_between_ranks() -> None:
    values = list(range(1, 101))

    assert (timing.percentile(values, 0.5), timing.percentile(values, 0.99)) == (50.5, pytest.approx(99.01))
    assert timing.percentile([7.0], 0.99) == 7.0
    assert timing.percentile([], 0.5) is None


def test_a_prompt_is_exactly_the_tokens_asked_for() -> None:
    ids = timing.prompt_ids(300, vocab=1024)

    assert len(ids) == 300
    assert all(10 <= i < 1024 for i in ids)
    assert ids == timing.prompt_ids(300, vocab=1024)
    assert torch.tensor(ids).unique().numel() > 100
