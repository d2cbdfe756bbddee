"""The fine_tune runner: supervised fine-tuning of a Hugging Face causal LM on a registered dataset,
full or LoRA, then the result registered as the next version of a model, with its lineage.

1. The dataset's train and eval splits are read (apps.jobs.datasets.reading) and encoded; a row that
   leaves nothing to learn fails the job as bad_data, naming the row.
2. The run resumes from the latest complete checkpoint of this job, else of the job it retries
   (`retry_of`, and that one's), with the batch and accumulation the checkpoint ran with; otherwise
   it starts from the base version, seeded.
3. The loop (loop.py) reports each step, evaluates and checkpoints on its intervals, and stops
   between steps and evaluation batches when asked (checkpointing first when the stop asks for it);
   reading the data and loading the model look for a stop too.
4. Out of memory: the run resumes from its last complete checkpoint with half the batch and twice
   the accumulation (the effective batch is kept), at most MOC_JOB_OOM_RETRIES times; the change is
   kept on the job (`adjustments`) and logged.
5. The model (full: safetensors, config, tokenizer, generation config; LoRA: the adapter, naming its
   base) is written to a staging folder (a dot-name, which scans skip) in MOC_FINETUNE_OUTPUT_ROOT,
   renamed to <model>-job<id>, and registered (apps.models.scanning.register). Once it is written no
   stop throws it away (Report.settle): a cancel or the time limit that lands now leaves it registered.
6. With the output registered, the checkpoints of the job and of the jobs it retries are deleted.

A second run of a job whose output was written (a retry after a lost worker) registers it again,
which the registry answers with the version already there.
"""

from __future__ import annotations

import gc
import math
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.utils import timezone
from django.utils.text import slugify

from apps.jobs import services
from apps.jobs.datasets import reading
from apps.jobs.devices import job_device
from apps.jobs.domain import params as job_params
from apps.jobs.domain.datasets import Example, Split
from apps.jobs.domain.failures import BadData, JobFailure, OutOfMemory, classify
from apps.jobs.domain.kinds import ErrorClass, JobKind, LogLevel
from apps.jobs.domain.params import FineTuneParams, Method
from apps.jobs.models import Dataset, Job
from apps.jobs.reporting import JobStopped, Outcome, Report
from apps.jobs.services.facts import shape_of
from apps.jobs.training import checkpoints
from apps.jobs.training.data import Encoded, encode
from apps.jobs.training.loading import LoadedLM, LoraSpec, load_causal_lm, load_tokenizer
from apps.jobs.training.loop import Plan, Trained, train
from apps.models.models import ModelVersion
from apps.models.scanning.register import version_register


def run(job: Job, report: Report) -> Outcome:
    params: FineTuneParams = job_params.from_stored(JobKind.FINE_TUNE, job.params)
    base = ModelVersion.objects.select_related("model").get(pk=params.base_version)
    dataset = Dataset.objects.get(pk=params.dataset)
    model_name = params.output_name or base.model.name
    final = Path(settings.MOC_FINETUNE_OUTPUT_ROOT) / f"{slugify(model_name) or 'model'}-job{job.pk}"
    try:
        if final.is_dir():
            report.settle()
            report.log(f"{final.name} was written by an earlier run of this job: registering it")
            result: dict[str, Any] = dict(job.result or {})
        else:
            trained = _train_with_retries(job, params, base, dataset, report)
            report.ensure_running()  # a runner that lost its job leaves the output to the one that has it
            _write_output(trained.lm, final)
            report.settle()  # written: no stop may throw it away now, it is registered whatever comes
            result = _figures(trained)
            del trained
    except JobStopped:
        raise
    except Exception as exc:
        error_class = classify(exc)
        if isinstance(exc, JobFailure) or error_class != ErrorClass.RUNNER_ERROR:
            report.log(str(exc), level=LogLevel.ERROR)
            return Outcome({}, error_class, str(exc))
        raise
    report.progress(1.0, "Registering the fine-tuned version")
    lineage = {
        "made_by": "fine_tune",
        "job": job.pk,
        "base_version": base.pk,
        "dataset": {
            "id": dataset.pk,
            "name": dataset.name,
            "sha256": dataset.sha256,
            # What split it trained on: the eval split of a later evaluation is the same rows only
            # while these are what they were.
            "eval_share": dataset.eval_share,
            "split_seed": dataset.split_seed,
        },
        "params": job_params.as_stored(params),
        "metrics": {k: result.get(k) for k in ("train_loss", "eval_loss_before", "eval_loss")},
        "adapter": params.method == Method.LORA,
        "at": timezone.now().isoformat(),
    }
    version = version_register(
        path=str(final), model_name=model_name, parent=base, lineage=lineage, created_by=job.created_by
    )
    registered = services.job_output_set(job_id=job.pk, task_id=report.task_id, version_id=version.pk)
    report.log(f"Registered {version}", data={"version": version.pk, "path": str(final)})
    if registered:
        _remove_checkpoints(job, report)
    return Outcome(
        {**result, "output_version": version.pk, "output_label": str(version), "output": str(final)}
    )


def _train_with_retries(
    job: Job, params: FineTuneParams, base: ModelVersion, dataset: Dataset, report: Report
) -> Trained:
    """Train, and after an out-of-memory resume with half the batch and twice the accumulation."""
    where = job_device(job)
    tokenizer = load_tokenizer(base.path)
    train_rows = _encoded(dataset, Split.TRAIN, tokenizer, params, report)
    if not train_rows:
        raise BadData(dataset.name, 0, "its train split holds no rows")
    eval_rows = _encoded(dataset, Split.EVAL, tokenizer, params, report)
    base_shape = shape_of(base)  # what the dispatcher reserved with, when the registry read it
    chain = _job_chain(job)
    resume = checkpoints.latest_complete(chain)
    batch, accum = _batching(job, params, resume)
    effective = params.batch_size * params.grad_accum
    total = params.max_steps or max(1, math.ceil(params.epochs * len(train_rows) / effective))
    retries = len(job.adjustments.get("out_of_memory", []))
    while True:
        plan = Plan(
            job_id=job.pk,
            params=params,
            total_steps=total,
            batch_size=batch,
            grad_accum=accum,
            device=where.torch,
            memory_limit=job.reserved_bytes if where.simulated else 0,
            simulated=str(where.device) if where.simulated else "",
            base_shape=base_shape,
        )
        report.stop_if_asked()
        lm = _load(plan, base, resume)
        report.stop_if_asked()
        if resume is not None:
            report.log(
                f"Resuming at step {resume.step} from the checkpoint of job #{resume.job_id}",
                data={"step": resume.step, "job": resume.job_id, "path": str(resume.path)},
            )
        try:
            return train(plan, lm, train_rows=train_rows, eval_rows=eval_rows, report=report, resume=resume)
        except Exception as exc:
            if not _out_of_memory(exc):
                raise
            del lm
            _free(where.torch)
            if retries >= settings.MOC_JOB_OOM_RETRIES or batch == 1:
                raise OutOfMemory(
                    f"{exc} (after {retries} out-of-memory retries; the batch was {batch})"
                ) from exc
            retries += 1
            batch, accum = batch // 2, accum * 2
            resume = checkpoints.latest_complete(chain)
            _adjust(job, report, batch=batch, accum=accum, error=str(exc), resumed=resume)


def _encoded(
    dataset: Dataset, split: Split, tokenizer: Any, params: FineTuneParams, report: Report
) -> list[Encoded]:
    return encode(
        _stoppable(reading.examples(dataset, split=split), report),
        tokenizer,
        seq_len=params.seq_len,
        dataset=dataset.name,
    )


def _stoppable(rows: Iterable[Example], report: Report) -> Iterator[Example]:
    """The rows, looking for a stop before each (reading and encoding a large dataset takes a while;
    Report looks in the database at most every STOP_CHECK_S)."""
    for row in rows:
        report.stop_if_asked()
        yield row


def _job_chain(job: Job) -> list[int]:
    """The job's id, then the jobs it retries, nearest first (a loop in the chain is cut)."""
    chain = [job.pk]
    parent_id = job.retry_of_id
    while parent_id is not None and parent_id not in chain:
        chain.append(parent_id)
        parent_id = Job.objects.filter(pk=parent_id).values_list("retry_of_id", flat=True).first()
    return chain


def _batching(job: Job, params: FineTuneParams, resume: checkpoints.Checkpoint | None) -> tuple[int, int]:
    """The batch and accumulation to run with: of the checkpoint's (when resuming) and what an
    earlier out-of-memory of this job set, the pair with the smaller batch (an out-of-memory after
    the checkpoint was written must not be run into again); else the parameters'. Each pair keeps
    the effective batch."""
    pairs = []
    if resume is not None and "batch_size" in resume.state:
        pairs.append((int(resume.state["batch_size"]), int(resume.state["grad_accum"])))
    if job.adjustments.get("batch_size"):
        pairs.append((int(job.adjustments["batch_size"]), int(job.adjustments["grad_accum"])))
    return min(pairs) if pairs else (params.batch_size, params.grad_accum)


def _load(plan: Plan, base: ModelVersion, resume: checkpoints.Checkpoint | None) -> LoadedLM:
    params = plan.params
    lora = params.method == Method.LORA
    if resume is not None:
        path = str(resume.model_path)
        return load_causal_lm(
            path=path, device=plan.device, base_path=base.path if lora else None, trainable=True
        )
    torch.manual_seed(params.seed)  # before the load: a fresh adapter's weights are drawn in it
    spec = (
        LoraSpec(rank=params.lora_rank, alpha=params.lora_alpha, dropout=params.lora_dropout)
        if lora
        else None
    )
    return load_causal_lm(path=base.path, device=plan.device, trainable=True, lora=spec)


def _out_of_memory(exc: Exception) -> bool:
    return isinstance(exc, (OutOfMemory, torch.OutOfMemoryError)) or (
        not isinstance(exc, JobStopped) and classify(exc) == ErrorClass.OUT_OF_MEMORY
    )


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _adjust(
    job: Job, report: Report, *, batch: int, accum: int, error: str, resumed: checkpoints.Checkpoint | None
) -> None:
    events = [*job.adjustments.get("out_of_memory", [])]
    events.append(
        {"at": timezone.now().isoformat(), "batch_size": batch, "grad_accum": accum, "error": error[:300]}
    )
    job.adjustments = {**job.adjustments, "batch_size": batch, "grad_accum": accum, "out_of_memory": events}
    if not services.job_adjustments_set(job_id=job.pk, task_id=report.task_id, adjustments=job.adjustments):
        raise JobStopped(f"job #{job.pk} is no longer running under task {report.task_id}")
    where = f"its checkpoint at step {resumed.step}" if resumed else "the start"
    report.log(
        f"Out of memory: resuming from {where} with batch {batch} and gradient accumulation {accum}",
        level=LogLevel.WARNING,
        data={"batch_size": batch, "grad_accum": accum, "error": error[:1000]},
    )


def _remove_checkpoints(job: Job, report: Report) -> None:
    """The output is registered: the checkpoints of the job and of the jobs it retries (each the
    model and AdamW's state, several times the model's size) are deleted, except those another
    unfinished retry may still resume from."""
    chain = _job_chain(job)
    removed = [job_id for job_id in report.checkpoints_release(job_ids=chain) if checkpoints.remove(job_id)]
    if removed:
        report.log(
            "Deleted the checkpoints of "
            + ", ".join(f"job #{job_id}" for job_id in removed)
            + ": the output is registered",
            data={"jobs": removed},
        )


def _write_output(lm: LoadedLM, final: Path) -> None:
    """The model (only the adapter for LoRA, its config naming the base's path) and the tokenizer,
    staged under a dot-name and renamed into place once complete."""
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        lm.model.save_pretrained(staging, safe_serialization=True)
        if not lm.adapter:
            lm.tokenizer.save_pretrained(staging)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _figures(trained: Trained) -> dict[str, Any]:
    return {
        "steps": trained.steps,
        "tokens": trained.tokens,
        "seconds": round(trained.seconds, 3),
        "tokens_per_s": round(trained.tokens / trained.seconds, 1) if trained.seconds else None,
        "train_loss": trained.train_loss,
        "eval_loss_before": trained.eval_loss_before,
        "eval_loss": trained.eval_loss,
        "resumed_from": trained.resumed_from,
    }
