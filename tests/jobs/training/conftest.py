"""A fine-tune's world, on disk and in the tables: the demo LM copied under a tmp model root and
registered as a version, a small JSONL dataset under a tmp dataset root, checkpoint and output roots
of the test's own, and a job RUNNING under a task, as a worker would have started it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs.domain import params as job_params
from apps.jobs.domain.datasets import Shape
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.params import FineTuneParams
from apps.jobs.domain.states import DatasetState, JobState
from apps.jobs.models import Dataset, Job
from apps.models import demo
from apps.models.models import ModelVersion
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory, RegisteredModelFactory

TASK = "task-1"
# Short status lines in words the demo tokenizer knows: a pattern a few steps of training pick up.
NODES = ("alpha", "beta", "gamma", "delta", "north", "south", "east", "west", "red", "blue")


def status_rows(count: int = 40) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"Node {NODES[i % len(NODES)]} {i}:",
            "completion": " The registry is green. Every version is healthy.",
        }
        for i in range(count)
    ]


@pytest.fixture
def roots(tmp_path: Path, settings: Any) -> Path:
    """Model, dataset, checkpoint and output roots under tmp_path, the only ones configured."""
    for name in ("models", "datasets", "checkpoints"):
        (tmp_path / name).mkdir()
    settings.MOC_MODEL_ROOTS = [str(tmp_path / "models")]
    settings.MOC_DATASET_ROOTS = [str(tmp_path / "datasets")]
    settings.MOC_CHECKPOINT_ROOT = str(tmp_path / "checkpoints")
    settings.MOC_FINETUNE_OUTPUT_ROOT = str(tmp_path / "models" / "fine-tuned")
    settings.MOC_CHECKPOINT_KEEP = 2
    return tmp_path


@pytest.fixture
def base(roots: Path, demo_models: Path, db: None) -> ModelVersion:
    """The demo LM, copied under the model root, as version 1 of model demo-gpt2."""
    folder = roots / "models" / demo.BASE
    shutil.copytree(demo_models / demo.BASE, folder)
    return ModelVersionFactory(
        model=RegisteredModelFactory(name="demo-gpt2"),
        number=1,
        format="hf",
        kind="causal-lm",
        root=str(roots / "models"),
        path=str(folder),
        size_bytes=1,
    )


@pytest.fixture
def make_dataset(roots: Path, db: None) -> Callable[..., Dataset]:
    def make(rows: list[Any] | None = None, *, name: str = "status", eval_share: float = 0.25) -> Dataset:
        rows = status_rows() if rows is None else rows
        path = roots / "datasets" / f"{name}.jsonl"
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return Dataset.objects.create(
            name=name,
            root=str(roots / "datasets"),
            path=path.name,
            format="jsonl",
            shape=Shape.PROMPT_COMPLETION,
            state=DatasetState.VALID,
            rows=len(rows),
            sha256="0" * 64,
            eval_share=eval_share,
        )

    return make


@pytest.fixture
def dataset(make_dataset: Callable[..., Dataset]) -> Dataset:
    return make_dataset()


@pytest.fixture
def make_job(base: ModelVersion, dataset: Dataset) -> Callable[..., Job]:
    """A fine-tune job of the demo LM (or of `base_version`) on the dataset, RUNNING under TASK;
    `changes` override the parameters (small and quick by default)."""

    def make(*, base_version: ModelVersion = base, **changes: Any) -> Job:
        fields = {"retry_of", "reserved_bytes", "device", "adjustments", "state"}
        job_fields = {"state": JobState.RUNNING} | {k: changes.pop(k) for k in list(changes) if k in fields}
        quick: dict[str, Any] = {
            "dataset": dataset.pk,
            "learning_rate": 5e-3,
            "max_steps": 8,
            "batch_size": 4,
            "seq_len": 32,
            "checkpoint_interval": 0,
        }
        params = FineTuneParams(base_version=base_version.pk, **(quick | changes))
        return JobFactory(
            kind=JobKind.FINE_TUNE,
            params=job_params.as_stored(params),
            task_id=TASK,
            started_at=timezone.now(),
            attempts=1,
            model_version=base_version,
            **job_fields,
        )

    return make
