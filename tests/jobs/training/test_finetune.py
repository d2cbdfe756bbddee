"""The fine_tune runner in process, on the demo LM and a small dataset written by the test: full and
LoRA runs that lower the eval loss and register a version with lineage; cancel, cancel with a
checkpoint, resume at the checkpoint's step; a simulated GPU's out-of-memory retried at half the
batch; a bad row named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from apps.jobs import reporting, services
from apps.jobs.domain import memory
from apps.jobs.domain import params as job_params
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.params import Method
from apps.jobs.domain.states import JobState
from apps.jobs.models import Dataset, Job, JobCheckpoint
from apps.jobs.reporting import JobStopped, Report, Stop
from apps.jobs.services import facts
from apps.jobs.training import checkpoints, finetune
from apps.jobs.training.loading import load_causal_lm
from apps.models import demo
from apps.models.models import ModelVersion
from apps.models.scanning.register import version_register
from tests.fleet.factories import DeviceFactory
from tests.jobs.training.conftest import TASK, status_rows

pytestmark = pytest.mark.django_db

MakeJob = Callable[..., Job]


class CancelAt(Report):
    """A real Report whose job an operator cancels (through the service) once step `at` is done."""

    def __init__(self, job: Job, *, at: int, save: bool = False) -> None:
        super().__init__(job, TASK)
        self.at, self.save, self.steps = at, save, []

    def step(self, *, step: int, **kwargs: Any) -> Stop | None:
        self.steps.append(step)
        if step == self.at:
            services.job_cancel(job=Job.objects.get(pk=self.job_id), save=self.save)
        return super().step(step=step, **kwargs)


class TakenAt(Report):
    """A real Report whose job the reconciler gives to a new attempt (task-2) as step `at` is
    reported: the worker running it looked lost. Its step `at` is not recorded."""

    def __init__(self, job: Job, *, at: int) -> None:
        super().__init__(job, TASK)
        self.at = at

    def step(self, *, step: int, **kwargs: Any) -> Stop | None:
        if step == self.at:
            Job.objects.filter(pk=self.job_id).update(task_id="task-2", attempts=2)
        return super().step(step=step, **kwargs)


@pytest.fixture(autouse=True)
def _stop_seen_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step writes its row and looks for a stop (the worker's defaults: at most every 0.5 s and
    0.25 s, many demo steps), so a cancel lands on a flush: its save still stands."""
    monkeypatch.setattr(reporting, "STOP_CHECK_S", 0.0)
    monkeypatch.setattr(reporting, "FLUSH_S", 0.0)


def _series(job: Job, name: str) -> list[tuple[int, float]]:
    return list(job.metrics.filter(name=name).order_by("step", "id").values_list("step", "value"))


def test_a_full_fine_tune_lowers_the_eval_loss_and_registers_a_version_with_lineage(
    make_job: MakeJob, base: ModelVersion, dataset: Dataset
) -> None:
    job = make_job()

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == ""
    result = outcome.result
    assert result["steps"] == 8
    assert result["tokens"] > 0
    assert result["tokens_per_s"] > 0
    assert result["eval_loss"] < result["eval_loss_before"]
    version = ModelVersion.objects.get(pk=result["output_version"])
    assert (version.model.name, version.number, version.parent_id) == ("demo-gpt2", 2, base.pk)
    assert version.lineage["base_version"] == base.pk
    assert version.lineage["dataset"] == {
        "id": dataset.pk,
        "name": "status",
        "sha256": "0" * 64,
        "eval_share": 0.25,
        "split_seed": 0,
    }
    assert version.lineage["params"]["max_steps"] == 8
    assert version.lineage["adapter"] is False
    assert version.lineage["metrics"]["eval_loss"] == result["eval_loss"]
    folder = Path(version.path)
    assert folder.name == f"demo-gpt2-job{job.pk}"
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= names
    job.refresh_from_db()
    assert job.output_version_id == version.pk
    assert (job.step, job.total_steps) == (8, 8)
    train_loss = _series(job, "train_loss")
    assert [step for step, _ in train_loss] == list(range(1, 9))
    eval_loss = _series(job, "eval_loss")
    assert [step for step, _ in eval_loss] == [0, 8]
    assert eval_loss[-1][1] < eval_loss[0][1]
    # The weights registered are the trained ones, loadable as they are.
    reloaded = load_causal_lm(path=str(folder), device="cpu")
    assert not reloaded.adapter


def test_a_lora_fine_tune_registers_an_adapter_naming_its_base(make_job: MakeJob, base: ModelVersion) -> None:
    job = make_job(method=Method.LORA, learning_rate=2e-2, lora_rank=4)

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == ""
    assert outcome.result["eval_loss"] < outcome.result["eval_loss_before"]
    version = ModelVersion.objects.get(pk=outcome.result["output_version"])
    folder = Path(version.path)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == base.path
    assert config["r"] == 4
    with safe_open(folder / "adapter_model.safetensors", framework="pt") as weights:
        names = weights.keys()
    assert names
    assert all("lora_" in name for name in names)
    assert version.lineage["adapter"] is True
    assert version.parent_id == base.pk
    adapted = load_causal_lm(path=str(folder), base_path=base.path, device="cpu")
    assert adapted.adapter


def test_a_cancel_stops_the_run_at_the_step_it_was_asked_at_without_a_checkpoint(make_job: MakeJob) -> None:
    job = make_job(max_steps=50)
    report = CancelAt(job, at=3)

    with pytest.raises(JobStopped):
        finetune.run(job, report)

    job.refresh_from_db()
    assert report.steps == [1, 2, 3]
    assert job.state == JobState.CANCELLING
    assert checkpoints.complete(job.pk) == []
    assert not job.checkpoints.exists()
    assert job.output_version is None


def test_a_cancel_with_save_writes_a_checkpoint_at_that_step_first(make_job: MakeJob) -> None:
    job = make_job(max_steps=50)

    with pytest.raises(JobStopped):
        finetune.run(job, CancelAt(job, at=4, save=True))

    [saved] = checkpoints.complete(job.pk)
    assert saved.step == 4
    assert saved.state["reason"] == "cancel"
    assert saved.state["examples"] == 4 * 4
    assert list(job.checkpoints.values_list("step", "reason")) == [(4, "cancel")]


def test_a_retry_resumes_at_its_checkpoint_and_ends_where_an_unbroken_run_ends(make_job: MakeJob) -> None:
    unbroken = make_job(max_steps=8)
    straight = finetune.run(unbroken, Report(unbroken, TASK)).result
    first = make_job(max_steps=8, checkpoint_interval=2)
    with pytest.raises(JobStopped):
        finetune.run(first, CancelAt(first, at=5, save=True))
    assert [c.step for c in checkpoints.complete(first.pk)] == [4, 5]  # keep 2: step 2 was pruned
    retry = make_job(max_steps=8, checkpoint_interval=2, retry_of=first)
    report = CancelAt(retry, at=-1)

    resumed = finetune.run(retry, report).result

    assert report.steps == [6, 7, 8]
    assert resumed["resumed_from"] == 5
    assert resumed["steps"] == 8
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-4)
    assert resumed["eval_loss"] == pytest.approx(straight["eval_loss"], rel=1e-4)
    assert retry.events.filter(
        message__startswith=f"Resuming at step 5 from the checkpoint of job #{first.pk}"
    ).exists()
    # Registered: the checkpoints of the retry and of the job it retries are gone, rows and folders.
    assert not checkpoints.job_folder(first.pk).exists()
    assert not checkpoints.job_folder(retry.pk).exists()
    assert not JobCheckpoint.objects.filter(job__in=[first, retry]).exists()
    assert retry.events.filter(
        message=f"Deleted the checkpoints of job #{retry.pk}, job #{first.pk}: the output is registered"
    ).exists()


def test_the_checkpoints_another_unfinished_retry_may_resume_from_are_kept(make_job: MakeJob) -> None:
    first = make_job(max_steps=8, checkpoint_interval=2)
    with pytest.raises(JobStopped):
        finetune.run(first, CancelAt(first, at=5, save=True))
    make_job(max_steps=8, retry_of=first, state=JobState.QUEUED)  # retried twice: one still waits
    retry = make_job(max_steps=8, checkpoint_interval=2, retry_of=first)

    assert finetune.run(retry, Report(retry, TASK)).error_class == ""

    assert [c.step for c in checkpoints.complete(first.pk)] == [4, 5]
    assert first.checkpoints.count() == 2
    assert not checkpoints.job_folder(retry.pk).exists()


def test_a_resume_behind_where_the_last_run_got_replaces_the_points_of_the_steps_it_replays(
    make_job: MakeJob,
) -> None:
    job = make_job(max_steps=8, checkpoint_interval=4, eval_interval=2)
    with pytest.raises(JobStopped):
        finetune.run(job, TakenAt(job, at=7))  # its last checkpoint is at step 4
    assert [step for step, _ in _series(job, "train_loss")] == list(range(1, 7))

    outcome = finetune.run(job, Report(job, "task-2"))

    assert outcome.result["resumed_from"] == 4
    assert [step for step, _ in _series(job, "train_loss")] == list(range(1, 9))
    assert [step for step, _ in _series(job, "eval_loss")] == [0, 2, 4, 6, 8]


def _reserve_for(batch: int, job: Job) -> int:
    lm = load_causal_lm(path=job.model_version.path, device="cpu", trainable=True)
    return memory.fine_tune_bytes(lm.shape(), method="full", lora_rank=8, batch=batch, seq_len=32)


def test_a_lora_fine_tune_at_batch_1_fits_in_what_the_dispatcher_reserves_for_it(
    make_job: MakeJob, roots: Path, demo_models: Path
) -> None:
    shutil.copytree(demo_models / demo.BASE, roots / "models" / "registered")
    registered = version_register(
        path=str(roots / "models" / "registered"), model_name="registered", parent=None, lineage={}
    )
    job = make_job(
        base_version=registered, method=Method.LORA, batch_size=1, device=DeviceFactory(simulated=True)
    )
    parsed = job_params.from_stored(JobKind.FINE_TUNE, job.params)
    job.reserved_bytes = facts.need_bytes(JobKind.FINE_TUNE, parsed, registered)
    assert facts.shape_of(registered) is not None  # the reservation is the estimate, not a fallback
    job.save(update_fields=["reserved_bytes"])

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == "", outcome.error
    job.refresh_from_db()
    assert job.adjustments == {}
    assert job.memory_bytes == job.reserved_bytes  # the step takes what was reserved, to the byte


def test_a_resume_after_an_out_of_memory_later_than_its_checkpoint_keeps_the_smaller_batch(
    make_job: MakeJob,
) -> None:
    first = make_job(batch_size=8, max_steps=8, checkpoint_interval=2)
    with pytest.raises(JobStopped):
        finetune.run(first, CancelAt(first, at=4, save=True))
    assert checkpoints.latest_complete([first.pk]).state["batch_size"] == 8
    # After the checkpoint the run ran out of memory at batch 8 and went on at batch 4; then its
    # worker was lost before the next checkpoint.
    halved = {"batch_size": 4, "grad_accum": 2, "out_of_memory": [{"batch_size": 4, "grad_accum": 2}]}
    retry = make_job(batch_size=8, max_steps=8, checkpoint_interval=2, retry_of=first, adjustments=halved)
    report = CancelAt(retry, at=6, save=True)

    with pytest.raises(JobStopped):
        finetune.run(retry, report)

    saved = checkpoints.latest_complete([retry.pk])
    assert (saved.step, saved.state["batch_size"], saved.state["grad_accum"]) == (6, 4, 2)
    assert saved.state["examples"] == 6 * 8  # the effective batch is kept


def test_out_of_memory_at_batch_8_resumes_at_batch_4_with_accumulation_2(make_job: MakeJob) -> None:
    job = make_job(batch_size=8, max_steps=4, checkpoint_interval=0, device=DeviceFactory(simulated=True))
    job.reserved_bytes = _reserve_for(4, job)
    job.save(update_fields=["reserved_bytes"])

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == ""
    assert outcome.result["steps"] == 4
    job.refresh_from_db()
    assert (job.adjustments["batch_size"], job.adjustments["grad_accum"]) == (4, 2)
    [event] = job.adjustments["out_of_memory"]
    assert "simulated device" in event["error"]
    assert "batch 8" in event["error"]
    assert job.events.filter(
        message="Out of memory: resuming from the start with batch 4 and gradient accumulation 2"
    ).exists()


def test_out_of_memory_past_the_retries_fails_the_job_as_out_of_memory(
    make_job: MakeJob, settings: Any
) -> None:
    settings.MOC_JOB_OOM_RETRIES = 1
    job = make_job(batch_size=8, max_steps=4, device=DeviceFactory(simulated=True))
    job.reserved_bytes = _reserve_for(2, job)
    job.save(update_fields=["reserved_bytes"])

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == ErrorClass.OUT_OF_MEMORY
    assert "after 1 out-of-memory retries; the batch was 4" in outcome.error
    assert "simulated device" in outcome.error
    job.refresh_from_db()
    assert job.output_version is None
    assert job.adjustments["batch_size"] == 4


def test_a_cancel_that_lands_once_the_output_is_written_leaves_it_registered_and_the_job_succeeds(
    make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job()
    write = finetune._write_output

    def written_then_cancelled(lm: Any, final: Path) -> None:
        write(lm, final)
        services.job_cancel(job=Job.objects.get(pk=job.pk))

    monkeypatch.setattr(finetune, "_write_output", written_then_cancelled)

    outcome = finetune.run(job, Report(job, TASK))

    job.refresh_from_db()
    assert job.state == JobState.CANCELLING
    assert outcome.error_class == ""
    version = ModelVersion.objects.get(pk=outcome.result["output_version"])
    assert job.output_version_id == version.pk
    assert version.lineage["job"] == job.pk
    # What the worker does with the outcome: a late cancel does not hide it.
    assert services.job_finish(job_id=job.pk, task_id=TASK, state=JobState.SUCCEEDED, result=outcome.result)
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED


class CancelAfter(CancelAt):
    """Cancels once step `at` is reported, after that step's own look for a stop: the next look
    comes in the evaluation that follows the step."""

    def step(self, *, step: int, **kwargs: Any) -> Stop | None:
        self.steps.append(step)
        stop = Report.step(self, step=step, **kwargs)
        if step == self.at:
            services.job_cancel(job=Job.objects.get(pk=self.job_id), save=self.save)
        return stop


def test_a_cancel_stops_the_run_within_an_evaluation_and_checkpoints_first_when_asked(
    make_job: MakeJob,
) -> None:
    job = make_job(max_steps=8, eval_interval=2)
    report = CancelAfter(job, at=2, save=True)

    with pytest.raises(JobStopped):
        finetune.run(job, report)

    assert report.steps == [1, 2]
    assert [step for step, _ in _series(job, "eval_loss")] == [0]  # the evaluation at step 2 stopped
    [saved] = checkpoints.complete(job.pk)
    assert (saved.step, saved.state["reason"]) == (2, "cancel")


def test_a_job_cancelled_before_its_first_step_stops_while_reading_its_data(make_job: MakeJob) -> None:
    job = make_job()
    services.job_cancel(job=job)
    report = CancelAt(job, at=-1)

    with pytest.raises(JobStopped):
        finetune.run(job, report)

    assert report.steps == []
    assert not job.metrics.exists()  # not even the evaluation before the first step


def test_a_row_that_leaves_nothing_to_learn_fails_the_job_as_bad_data_naming_it(
    make_job: MakeJob, make_dataset: Callable[..., Dataset]
) -> None:
    rows = status_rows(12)
    rows[6] = {"prompt": "The registry holds models. " * 20, "completion": " green"}
    bad = make_dataset(rows, name="too-long", eval_share=0.0)
    job = make_job(dataset=bad.pk)

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == ErrorClass.BAD_DATA
    assert outcome.error.startswith("dataset too-long, row 7: nothing to learn within the sequence length")


def test_a_row_that_is_not_json_fails_the_job_as_bad_data_naming_it(
    make_job: MakeJob, make_dataset: Callable[..., Dataset]
) -> None:
    rows: list[Any] = [*status_rows(5), '{"prompt": "cut short', *status_rows(3)]
    job = make_job(dataset=make_dataset(rows, name="broken", eval_share=0.0).pk)

    outcome = finetune.run(job, Report(job, TASK))

    assert outcome.error_class == ErrorClass.BAD_DATA
    assert outcome.error.startswith("dataset broken, row 6: not JSON")
