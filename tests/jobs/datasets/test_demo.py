"""manage.py datasets_demo: demo datasets from the shipped text, registered and valid; idempotent."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.jobs.datasets import reading
from apps.jobs.domain.datasets import Split
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("datasets_demo", *args, stdout=out)
    return out.getvalue()


def test_demo_writes_registers_and_validates_three_shapes(dataset_root: Path) -> None:
    run()

    datasets = {d.name: d for d in Dataset.objects.all()}
    assert {name: d.shape for name, d in datasets.items()} == {
        "demo-corpus": "text",
        "demo-status": "prompt_completion",
        "demo-chat": "chat",
    }
    assert all(d.state == DatasetState.VALID and d.rows >= 8 for d in datasets.values())
    first = json.loads((dataset_root / "demo-status.jsonl").read_text().splitlines()[0])
    assert first == {
        "prompt": "The fleet is green.",
        "completion": " Every node is healthy, every GPU is quiet, and no alert fires.",
    }


def test_demo_datasets_have_rows_in_both_splits(dataset_root: Path) -> None:
    run()

    for dataset in Dataset.objects.all():
        assert reading.count(dataset, split=Split.TRAIN) > 0
        assert reading.count(dataset, split=Split.EVAL) > 0


def test_a_second_run_changes_nothing(dataset_root: Path) -> None:
    run()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dataset_root.iterdir()}
    validated = dict(Dataset.objects.values_list("name", "validated_at"))

    output = run()

    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dataset_root.iterdir()} == before
    assert dict(Dataset.objects.values_list("name", "validated_at")) == validated
    assert output.count("kept") == 3


def test_demo_refuses_a_folder_that_is_not_a_dataset_root(dataset_root: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not a dataset root"):
        run("--out", str(tmp_path / "elsewhere"))
