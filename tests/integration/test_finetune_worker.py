"""A fine-tune through a real device worker (simulated GPU, thread pool): queued through the
services, placed by the dispatcher, run to SUCCEEDED with a new version registered; and a worker
killed (SIGKILL) mid-run: the reconciler puts the job back, and a new worker resumes it from its
last complete checkpoint, never from a half-written step folder, reporting each replayed step once and
deleting its checkpoints once its output is registered."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test.utils import override_settings
from django.utils import timezone

from apps.fleet.models import Device
from apps.jobs import services
from apps.jobs.domain.states import DatasetState, JobState
from apps.jobs.models import Dataset, Job, JobCheckpoint
from apps.jobs.training import checkpoints
from apps.models import demo, scanning
from apps.models.models import ModelVersion
from tests.jobs.training.conftest import status_rows
from tests.procs import Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-train"
QUEUE = f"gpu.{NODE}.0"


@pytest.fixture
def world(tmp_path: Path, demo_models: Path, settings: Any) -> dict[str, Any]:
    """Roots under tmp_path (here and in the worker), the demo LM registered, a valid dataset."""
    roots = {name: tmp_path / name for name in ("models", "datasets", "checkpoints")}
    for folder in roots.values():
        folder.mkdir()
    shutil.copytree(demo_models / demo.BASE, roots["models"] / demo.BASE)
    env = {
        "MOC_MODEL_ROOTS": str(roots["models"]),
        "MOC_DATASET_ROOTS": str(roots["datasets"]),
        "MOC_CHECKPOINT_ROOT": str(roots["checkpoints"]),
        "MOC_FINETUNE_OUTPUT_ROOT": str(roots["models"] / "fine-tuned"),
    }
    settings.MOC_MODEL_ROOTS = [env["MOC_MODEL_ROOTS"]]
    settings.MOC_DATASET_ROOTS = [env["MOC_DATASET_ROOTS"]]
    settings.MOC_CHECKPOINT_ROOT = env["MOC_CHECKPOINT_ROOT"]
    settings.MOC_FINETUNE_OUTPUT_ROOT = env["MOC_FINETUNE_OUTPUT_ROOT"]
    with override_settings(MOC_MODEL_ROOTS=settings.MOC_MODEL_ROOTS):
        base = scanning.version_register(
            path=str(roots["models"] / demo.BASE), model_name="demo-gpt2", parent=None, lineage={}
        )
    (roots["datasets"] / "status.jsonl").write_text("".join(json.dumps(r) + "\n" for r in status_rows()))
    dataset = Dataset.objects.create(
        name="status",
        root=str(roots["datasets"]),
        path="status.jsonl",
        format="jsonl",
        shape="prompt_completion",
        state=DatasetState.VALID,
        rows=40,
        eval_share=0.25,
    )
    return {"env": env, "base": base, "dataset": dataset}


@pytest.fixture
def device_worker(start_worker: Callable[..., Process], world: dict[str, Any]) -> Callable[[], Process]:
    def start() -> Process:
        worker = start_worker(
            queues=QUEUE,
            pool="threads",
            name="train0",
            MOC_DEVICES="sim:1x24GiB",
            MOC_NODE_NAME=NODE,
            MOC_RUNNING_LEASE_S="1",
            **world["env"],
        )
        wait_until(lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker's device")
        return worker

    return start


def _queue(world: dict[str, Any], **params: Any) -> Job:
    quick = {"learning_rate": 5e-3, "max_steps": 8, "batch_size": 4, "seq_len": 32, "checkpoint_interval": 0}
    job = services.job_create(
        kind="fine_tune",
        params={"base_version": world["base"].pk, "dataset": world["dataset"].pk, **quick, **params},
    )
    services.jobs_dispatch(now=timezone.now())
    return job


def _settled(job: Job, *states: str, timeout: float = 120) -> Job:
    def done() -> bool:
        services.jobs_dispatch(now=timezone.now())  # what beat does: a job put back goes out again
        return Job.objects.get(pk=job.pk).state in states

    wait_until(done, timeout, f"job {job.pk} to reach {states}", 0.5)
    return Job.objects.get(pk=job.pk)


def test_a_fine_tune_queued_through_the_services_runs_on_a_device_worker_and_registers_a_version(
    device_worker: Callable[[], Process], world: dict[str, Any]
) -> None:
    device_worker()

    job = _settled(_queue(world), JobState.SUCCEEDED, JobState.FAILED)

    assert job.state == JobState.SUCCEEDED, (job.error_class, job.error)
    assert job.worker.startswith("train0@")
    assert job.device.node.name == NODE
    version = ModelVersion.objects.get(pk=job.result["output_version"])
    assert job.output_version_id == version.pk
    assert (version.model.name, version.parent_id) == ("demo-gpt2", world["base"].pk)
    assert version.lineage["job"] == job.pk
    assert job.result["eval_loss"] < job.result["eval_loss_before"]


def test_a_worker_killed_mid_run_is_resumed_from_its_last_complete_checkpoint_by_a_new_worker(
    device_worker: Callable[[], Process], world: dict[str, Any], settings: Any
) -> None:
    worker = device_worker()
    job = _queue(world, max_steps=400, checkpoint_interval=10)
    wait_until(
        lambda: JobCheckpoint.objects.filter(job=job, step__gte=20).exists(),
        120,
        "a checkpoint at step 20",
        0.2,
    )

    worker.kill()
    last = checkpoints.latest_complete([job.pk])
    assert last is not None
    # A step folder the kill could have left half-written, later than any complete one: never used.
    half = checkpoints.job_folder(job.pk) / checkpoints.step_name(395)
    shutil.copytree(last.path, half)
    (half / checkpoints.COMPLETE).unlink()
    settings.MOC_RUNNING_LEASE_S = 1
    time.sleep(4)  # the killed worker's heartbeat key expires
    device_worker()
    services.jobs_redispatch_stale(now=timezone.now())

    job = _settled(job, JobState.SUCCEEDED, JobState.FAILED, timeout=240)

    assert job.state == JobState.SUCCEEDED, (job.error_class, job.error)
    assert job.attempts == 2
    assert job.result["resumed_from"] == last.step
    assert job.result["steps"] == 400
    assert job.events.filter(
        message=f"Resuming at step {last.step} from the checkpoint of job #{job.pk}"
    ).exists()
    assert not (half / checkpoints.COMPLETE).exists()
    # The steps the killed run reported past its checkpoint were replayed: one point each.
    steps = list(job.metrics.filter(name="train_loss").values_list("step", flat=True))
    assert len(steps) == len(set(steps))
    assert max(steps) == 400
    # The output is registered: the checkpoints (a half-written folder too) are gone.
    assert not checkpoints.job_folder(job.pk).exists()
    assert not JobCheckpoint.objects.filter(job=job).exists()
