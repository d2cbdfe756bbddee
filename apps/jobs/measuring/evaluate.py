"""The evaluate runner: a causal LM's loss and perplexity over a dataset's split, and its exact match
on golden (prompt, expected) pairs, stored on the version (services.version_record_evaluation).

The loss is the mean cross-entropy over every learned token of the split (the completion's, as a
fine-tune learns them: apps.jobs.training.data), summed across batches and divided once, so
batches of different sizes weigh by their tokens; perplexity is exp(loss). A golden answer is the
greedy continuation of its prompt (max_new_tokens, ending at the end-of-text token), and matches
when it equals the expected text once both are stripped of surrounding whitespace.

The version's evaluations keep one entry per key (apps.models.domain.measured): `dataset:<name>:<split>`
for loss and perplexity, and `golden:<first 8 hex of the pairs' sha256>` for the exact match, in
namespaces a dataset's name cannot collide with. So evaluations on different data, splits or golden
sets of the same version stand side by side, and the model page compares versions key by key. The
figures also record what the key does not: the dataset file's sha256 and its split rule (eval_share,
split_seed) as they were when it was read, and the golden set's whole sha256 and its pairs' count.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from apps.jobs.datasets.reading import examples
from apps.jobs.devices import job_device
from apps.jobs.domain import params as job_params
from apps.jobs.domain.failures import JobFailure
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.params import EvaluateParams
from apps.jobs.models import Dataset, Job
from apps.jobs.reporting import Outcome, Report
from apps.jobs.training.data import encode
from apps.jobs.training.loading import LoadedLM, load_causal_lm
from apps.jobs.training.scoring import mean_loss
from apps.models import services as model_services
from apps.models.domain import measured
from apps.models.models import ModelVersion

# What an evaluation on a dataset stores on the version, under measured.dataset_key.
DATASET_FIGURES = (
    "loss",
    "perplexity",
    "rows",
    "tokens",
    "split",
    "dataset",
    "dataset_id",
    "sha256",
    "eval_share",
    "split_seed",
)


def run(job: Job, report: Report) -> Outcome:
    params: EvaluateParams = job_params.from_stored(JobKind.EVALUATE, job.params)
    version = ModelVersion.objects.select_related("model", "parent").get(pk=params.version)
    dataset = Dataset.objects.get(pk=params.dataset) if params.dataset else None
    result: dict[str, Any] = {"version": version.pk, "rows": 0, "tokens": 0}
    try:
        lm = _load(version, job_device(job).torch)
        report.progress(0.02, f"Loaded {version} on {lm.device}")
        scorer = _Scorer(lm, report, params)
        if dataset is not None:
            result.update(_dataset_facts(dataset), split=params.split, **scorer.loss(dataset))
        if params.golden:
            result.update(scorer.golden(params.golden))
    except JobFailure as failure:  # a bad row, a model that cannot load: its class, in its words
        return Outcome(result, failure.error_class, str(failure))
    if dataset is not None and not result["rows"]:
        return Outcome(
            result, ErrorClass.BAD_DATA, f"dataset {dataset.name}: its {params.split} split holds no rows"
        )
    report.flush()
    _store(version, job, result)
    return Outcome(result)


def _dataset_facts(dataset: Dataset) -> dict[str, Any]:
    """What identifies the rows an evaluation read beyond the dataset's name: its file's sha256 and
    its split rule, which may change later."""
    return {
        "dataset": dataset.name,
        "dataset_id": dataset.pk,
        "sha256": dataset.sha256 or None,
        "eval_share": dataset.eval_share,
        "split_seed": dataset.split_seed,
    }


def _load(version: ModelVersion, device: str) -> LoadedLM:
    if version.kind == "adapter" and version.parent is not None:
        return load_causal_lm(path=version.path, base_path=version.parent.path, device=device)
    return load_causal_lm(path=version.path, device=device)


class _Scorer:
    """The steps of one evaluation (loss batches, then golden prompts), reported as they are done."""

    def __init__(self, lm: LoadedLM, report: Report, params: EvaluateParams) -> None:
        self.lm, self.report, self.params = lm, report, params
        self.model = lm.model.eval()
        self.step = 0
        self.total = len(params.golden)

    def loss(self, dataset: Dataset) -> dict[str, Any]:
        rows = encode(
            examples(dataset, split=self.params.split),
            self.lm.tokenizer,
            seq_len=self.params.seq_len,
            dataset=dataset.name,
        )
        self.total += math.ceil(len(rows) / self.params.batch_size)
        scored = mean_loss(
            self.model,
            rows,
            batch_size=self.params.batch_size,
            pad_id=self.lm.tokenizer.pad_token_id,
            device=self.lm.device,
            on_batch=lambda tokens: self._stepped(tokens=tokens, message="Scoring the dataset"),
        )
        loss = scored.loss
        if loss is not None:
            self.report.metrics(step=self.step, values={"eval_loss": loss})
        return {
            "loss": round(loss, 6) if loss is not None else None,
            "perplexity": round(math.exp(min(loss, 700.0)), 4) if loss is not None else None,
            "rows": len(rows),
            "tokens": scored.tokens,
        }

    def golden(self, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        tokenizer = self.lm.tokenizer
        answers = []
        with torch.inference_mode():
            for prompt, expected in pairs:
                ids = tokenizer(prompt, return_tensors="pt").to(self.lm.device)
                made = self.model.generate(
                    **ids,
                    max_new_tokens=self.params.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=tokenizer.pad_token_id,
                )
                got = tokenizer.decode(made[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
                answers.append(
                    {
                        "prompt": prompt,
                        "expected": expected,
                        "got": got,
                        "ok": got.strip() == expected.strip(),
                    }
                )
                self._stepped(tokens=int(made.shape[1]), message="Answering the golden prompts")
        right = sum(a["ok"] for a in answers)
        return {"exact_match": round(right / len(answers), 6), "golden": answers}

    def _stepped(self, *, tokens: int, message: str) -> None:
        self.step += 1
        memory = torch.cuda.memory_allocated(self.lm.device) if self.lm.device.startswith("cuda") else None
        stop = self.report.step(
            step=self.step,
            total=max(self.total, self.step),
            tokens=tokens,
            memory_bytes=memory,
            message=message,
        )
        if stop:
            self.report.stop_now(stop)  # an evaluation keeps nothing to resume from: it starts again


def _store(version: ModelVersion, job: Job, result: dict[str, Any]) -> None:
    if "dataset" in result:
        figures = {k: result[k] for k in DATASET_FIGURES}
        model_services.version_record_evaluation(
            version=version,
            key=measured.dataset_key(result["dataset"], result["split"]),
            figures={**figures, "job": job.pk},
        )
    if "golden" in result:
        pairs = [(a["prompt"], a["expected"]) for a in result["golden"]]
        sha256 = measured.golden_sha256(pairs)
        model_services.version_record_evaluation(
            version=version,
            key=measured.golden_key(sha256),
            figures={
                "exact_match": result["exact_match"],
                "right": sum(a["ok"] for a in result["golden"]),
                "of": len(pairs),
                "golden_sha256": sha256,
                "job": job.pk,
            },
        )
