"""Registering a job's output (scanning.version_register): a real demo-model folder copied under a
tmp model root, read as a scan reads it, numbered after the model's versions, with its parent and
lineage; refused outside the roots; found unchanged by a later scan."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.core import redis_clients
from apps.core.domain.errors import Conflict
from apps.models import demo, scanning
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.models.messages import REGISTRY_CHECKSUM, REGISTRY_VALIDATE
from apps.models.models import ModelVersion, RegisteredModel
from apps.models.scanning import register
from apps.models.scanning.base import scan_lock
from tests.models.factories import ModelVersionFactory, RegisteredModelFactory
from tests.models.formats import corpus
from tests.models.scans import scan_now, validated, version_at

pytestmark = pytest.mark.django_db

Commits = Callable[..., Any]
LINEAGE = {"job": {"id": 7, "url": "/jobs/7/"}, "base_version": 1, "dataset": {"id": 3, "name": "greetings"}}


@pytest.fixture
def output(root: Path, demo_models: Path) -> Path:
    """A fine-tune's output: the demo LM's folder copied under the model root."""
    folder = root / "fine-tuned" / "job-7"
    shutil.copytree(demo_models / demo.BASE, folder)
    return folder


def _register(path: Path, **overrides: Any) -> ModelVersion:
    arguments: dict[str, Any] = {"model_name": "demo-ft", "parent": None, "lineage": LINEAGE} | overrides
    return scanning.version_register(path=str(path), **arguments)


def test_a_folder_is_registered_as_a_scan_would_with_its_parent_and_lineage(
    output: Path,
    dispatched: list[tuple[str, list[Any], dict[str, Any]]],
    django_capture_on_commit_callbacks: Commits,
) -> None:
    parent = ModelVersionFactory()

    with django_capture_on_commit_callbacks(execute=True):
        version = _register(output, parent=parent)

    version.refresh_from_db()
    assert (version.model.name, version.number, version.parent, version.lineage) == (
        "demo-ft",
        1,
        parent,
        LINEAGE,
    )
    assert (version.path, version.format, version.kind) == (str(output), ModelFormat.HF, "causal-lm")
    assert version.params_count
    assert version.estimated_vram_bytes
    on_disk = sorted(p.name for p in output.iterdir() if p.is_file())
    assert sorted(version.files.values_list("path", flat=True)) == on_disk
    assert version.files.get(path="model.safetensors").header["params_count"] == version.params_count
    hashed = [file_id for name, args, _ in dispatched if name == REGISTRY_CHECKSUM for file_id in args[0]]
    assert sorted(hashed) == sorted(version.files.values_list("pk", flat=True))
    assert [args for name, args, _ in dispatched if name == REGISTRY_VALIDATE] == [[version.pk]]


def test_its_checksums_and_validation_make_it_valid(output: Path) -> None:
    version = _register(output)

    scanning.files_checksum(file_ids=list(version.files.values_list("pk", flat=True)))

    assert validated(version).validation_state == ValidationState.VALID
    assert version.sha256


def test_the_next_output_is_the_next_version_of_the_same_model(output: Path) -> None:
    first = _register(output)
    second_folder = output.parent / "job-8"
    shutil.copytree(output, second_folder)

    second = _register(second_folder, model_name="Demo-FT", parent=first)

    assert (second.model_id, second.number, second.parent) == (first.model_id, 2, first)
    assert RegisteredModel.objects.filter(name__iexact="demo-ft").count() == 1


def test_a_later_scan_finds_it_unchanged_and_registers_nothing_again(output: Path) -> None:
    version = _register(output)
    files = version.files.count()

    scan = scan_now()

    assert (scan.new, scan.changed, scan.removed, scan.unchanged) == (0, 0, 0, files)
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [version.pk]
    assert version_at(output).model.name == "demo-ft"


def test_registering_the_same_path_twice_returns_the_one_version(output: Path) -> None:
    first = _register(output)

    again = _register(output)

    assert again.pk == first.pk
    assert ModelVersion.objects.count() == 1


def test_a_folder_a_scan_found_first_is_moved_into_the_named_model(output: Path) -> None:
    scan_now()
    found = version_at(output)
    assert found.model.name == "job-7"
    base = ModelVersionFactory()

    version = _register(output, parent=base)

    assert (version.pk, version.model.name, version.number) == (found.pk, "demo-ft", 1)
    assert (version.parent, version.lineage) == (base, LINEAGE)
    assert not RegisteredModel.objects.filter(name="job-7").exists()


def test_a_single_weight_file_is_registered(root: Path) -> None:
    path = corpus.write_safetensors(root / "converted", "demo.safetensors")

    version = _register(path, model_name="demo-converted")

    assert (version.path, version.format, version.files.get().path) == (
        str(path),
        ModelFormat.SAFETENSORS,
        "demo.safetensors",
    )


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("outside", "not under a model root"),
        ("plain", "not a model folder"),
        ("hidden", "hidden name"),
        ("missing", "no such folder"),
        ("inner", "not a model of its own"),
    ],
)
def test_a_path_a_scan_would_not_register_is_refused_naming_the_path(
    root: Path, output: Path, tmp_path: Path, where: str, why: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(output, elsewhere)
    (root / "plain").mkdir()
    (root / "plain" / "notes.txt").write_text("no model here")
    shutil.copytree(output, root / ".staging")
    paths = {
        "outside": elsewhere,
        "plain": root / "plain",
        "hidden": root / ".staging",
        "missing": root / "nothing",
        "inner": output / "model.safetensors",
    }

    with pytest.raises(ValidationError) as refused:
        _register(paths[where])

    assert why in refused.value.message_dict["path"][0]
    assert not ModelVersion.objects.exists()


def test_a_bad_model_name_is_refused_naming_the_field(output: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        _register(output, model_name="bad name/")

    assert "model_name" in refused.value.message_dict
    assert not ModelVersion.objects.exists()


def test_an_archived_model_is_refused(output: Path) -> None:
    RegisteredModelFactory(name="demo-ft", archived=True)

    with pytest.raises(ValidationError) as refused:
        _register(output)

    assert "archived" in refused.value.message_dict["model_name"][0]


def test_it_waits_for_a_running_scan_and_gives_up_with_a_conflict(
    output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(register, "LOCK_WAIT_S", 0.2)
    walking = scan_lock(redis_clients.redis_client())
    assert walking.acquire()
    try:
        with pytest.raises(Conflict):
            _register(output)
    finally:
        walking.release()

    assert _register(output).number == 1
