"""Making a version the next version of another model (services.version_move): over real scanned
files, its refusals, its numbering, that a rescan leaves it where it was moved, and the version page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.states import RELEASE_OPEN, ReleaseState
from apps.deployments.models import Deployment
from apps.models import services
from apps.models.domain.states import ScanState
from apps.models.models import ModelAlias, ModelFile, ModelVersion, RegisteredModel
from apps.serving.domain.states import PLACEMENT_ACTIVE, PlacementState
from tests.deployments.factories import DeploymentFactory, ReleaseFactory
from tests.models.factories import ModelAliasFactory, ModelVersionFactory, RegisteredModelFactory
from tests.models.formats import corpus
from tests.models.scans import scan_now, version_at
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


@pytest.fixture
def scanned(root: Path) -> tuple[ModelVersion, ModelVersion]:
    """Two model folders, a base and its retrained copy, scanned: each a model of its own at v1."""
    corpus.write_hf_folder(root / "llama")
    corpus.write_hf_folder(root / "llama-retrained")
    assert scan_now().state == ScanState.SUCCEEDED
    return version_at(root / "llama"), version_at(root / "llama-retrained")


def _refusal(version: ModelVersion, model: RegisteredModel) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as err:
        services.version_move(version=version, model=model)
    return err.value.message_dict


# The service, over scanned files


def test_a_scanned_folder_becomes_the_next_version_and_its_own_model_is_deleted(
    scanned: tuple[ModelVersion, ModelVersion],
) -> None:
    base, retrained = scanned
    files = sorted(retrained.files.values_list("pk", "path"))
    scanned_as = retrained.model

    moved = services.version_move(version=retrained, model=base.model)

    assert (moved.pk, moved.model, moved.number, moved.path) == (
        retrained.pk,
        base.model,
        2,
        retrained.path,
    )
    assert sorted(moved.files.values_list("pk", "path")) == files
    assert not RegisteredModel.objects.filter(pk=scanned_as.pk).exists()
    assert list(RegisteredModel.objects.values_list("name", flat=True)) == ["llama"]


def test_a_rescan_keeps_the_moved_version_where_it_was_moved(
    root: Path, scanned: tuple[ModelVersion, ModelVersion]
) -> None:
    base, retrained = scanned
    services.version_move(version=retrained, model=base.model)
    file_count = ModelFile.objects.count()

    again = scan_now()

    assert (again.state, again.new, again.removed, again.unchanged) == (ScanState.SUCCEEDED, 0, 0, file_count)
    assert list(RegisteredModel.objects.values_list("name", flat=True)) == ["llama"]
    assert sorted(ModelVersion.objects.values_list("path", "model__name", "number")) == [
        (str(root / "llama"), "llama", 1),
        (str(root / "llama-retrained"), "llama", 2),
    ]


def test_a_rescan_after_a_file_of_the_moved_version_changed_still_keeps_it(
    root: Path, scanned: tuple[ModelVersion, ModelVersion]
) -> None:
    base, retrained = scanned
    services.version_move(version=retrained, model=base.model)
    corpus.write_json(root / "llama-retrained", "generation_config.json", {"max_length": 4096})

    again = scan_now()

    assert (again.changed, again.new) == (1, 0)
    assert version_at(root / "llama-retrained").model_id == base.model_id


# Numbering


def test_the_number_follows_the_highest_even_an_archived_one() -> None:
    target = RegisteredModelFactory()
    ModelVersionFactory(model=target, number=1)
    ModelVersionFactory(model=target, number=3, archived=True)
    version = ModelVersionFactory(number=1)

    assert services.version_move(version=version, model=target).number == 4


def test_two_versions_moved_in_turn_take_the_next_numbers_in_turn() -> None:
    target = ModelVersionFactory(number=1).model
    first, second = ModelVersionFactory(number=1), ModelVersionFactory(number=1)

    numbers = [services.version_move(version=v, model=target).number for v in (first, second)]

    assert numbers == [2, 3]


def test_a_model_with_no_versions_yet_takes_it_as_v1() -> None:
    target = RegisteredModelFactory()
    version = ModelVersionFactory(number=1)

    assert services.version_move(version=version, model=target).number == 1


# Refusals: each names its field, and nothing changes


def _unchanged(version: ModelVersion) -> None:
    stored = ModelVersion.objects.get(pk=version.pk)
    assert (stored.model_id, stored.number) == (version.model_id, version.number)
    assert RegisteredModel.objects.filter(pk=version.model_id).exists()


def test_moving_into_its_own_model_is_refused_under_model() -> None:
    version = ModelVersionFactory()

    errors = _refusal(version, version.model)

    assert "already a version of" in errors["model"][0]
    _unchanged(version)


def test_moving_into_an_archived_model_is_refused_under_model() -> None:
    version = ModelVersionFactory()
    target = RegisteredModelFactory(archived=True)

    errors = _refusal(version, target)

    assert "archived" in errors["model"][0]
    _unchanged(version)


def test_a_version_that_is_not_its_models_only_one_is_refused_under_version() -> None:
    version = ModelVersionFactory(number=2)
    ModelVersionFactory(model=version.model, number=1)

    errors = _refusal(version, RegisteredModelFactory())

    assert "has 2 versions" in errors["version"][0]
    _unchanged(version)


def test_a_version_an_alias_points_at_is_refused_naming_the_alias() -> None:
    alias = ModelAliasFactory(name="production")

    errors = _refusal(alias.version, RegisteredModelFactory())

    assert f"{alias.model.name}@production" in errors["version"][0]
    _unchanged(alias.version)
    assert ModelAlias.objects.filter(pk=alias.pk).exists()


@pytest.mark.parametrize("state", sorted(PLACEMENT_ACTIVE))
def test_a_version_with_an_active_placement_is_refused_naming_the_placement(state: str) -> None:
    placement = PlacementFactory(state=state)
    PlacementFactory(version=placement.version, state=PlacementState.UNLOADED)

    errors = _refusal(placement.version, RegisteredModelFactory())

    assert f"active placements {placement.pk}" in errors["version"][0]
    _unchanged(placement.version)


@pytest.mark.parametrize("state", [PlacementState.UNLOADED, PlacementState.FAILED, PlacementState.LOST])
def test_a_version_whose_placements_ended_moves_and_they_follow_it(state: PlacementState) -> None:
    placement = PlacementFactory(state=state)
    target = ModelVersionFactory(number=1).model

    moved = services.version_move(version=placement.version, model=target)

    assert (moved.model, moved.number) == (target, 2)
    placement.refresh_from_db()
    assert (placement.version_id, placement.state) == (moved.pk, state)


def test_a_scanned_version_loaded_once_and_unloaded_moves(scanned: tuple[ModelVersion, ModelVersion]) -> None:
    base, retrained = scanned
    PlacementFactory(version=retrained, state=PlacementState.UNLOADED)

    assert services.version_move(version=retrained, model=base.model).number == 2


@pytest.mark.parametrize("state", sorted(RELEASE_OPEN))
def test_a_version_with_a_release_in_progress_is_refused_naming_the_release(state: str) -> None:
    release = ReleaseFactory(state=state)

    errors = _refusal(release.model_version, RegisteredModelFactory())

    assert f"live or in-progress releases {release.pk}" in errors["version"][0]
    _unchanged(release.model_version)


def test_a_version_a_deployment_serves_now_is_refused_naming_the_release() -> None:
    # The deployment serves another model now: only its live release holds the version.
    release = ReleaseFactory(
        state=ReleaseState.PROMOTED, deployment__registered_model=RegisteredModelFactory()
    )
    Deployment.objects.filter(pk=release.deployment_id).update(current_release=release)

    errors = _refusal(release.model_version, RegisteredModelFactory())

    assert f"live or in-progress releases {release.pk}" in errors["version"][0]
    assert "deployments" not in errors["version"][0]
    _unchanged(release.model_version)


@pytest.mark.parametrize("state", [ReleaseState.ROLLED_BACK, ReleaseState.PROMOTED, ReleaseState.FAILED])
def test_a_version_whose_releases_ended_moves(state: ReleaseState) -> None:
    # A deployment that since serves another model: the release, no longer its current one, is history.
    release = ReleaseFactory(state=state, deployment__registered_model=RegisteredModelFactory())
    target = RegisteredModelFactory()

    moved = services.version_move(version=release.model_version, model=target)

    assert moved.model == target
    release.refresh_from_db()
    assert release.model_version_id == moved.pk


def test_a_version_whose_model_a_deployment_serves_is_refused_naming_the_deployment() -> None:
    version = ModelVersionFactory()
    deployment = DeploymentFactory(registered_model=version.model)

    errors = _refusal(version, RegisteredModelFactory())

    assert f"deployments {deployment.pk}" in errors["version"][0]
    _unchanged(version)


def test_everything_that_uses_it_is_named_in_one_refusal() -> None:
    placement = PlacementFactory(state=PlacementState.LOADED)
    release = ReleaseFactory(model_version=placement.version)
    deployment = DeploymentFactory(registered_model=placement.version.model)

    (message,) = _refusal(placement.version, RegisteredModelFactory())["version"]

    assert message == (
        f"{placement.version} is in use (active placements {placement.pk}; "
        f"live or in-progress releases {release.pk}; deployments {deployment.pk}): "
        "it can only move while unused."
    )


# The version page


def _version_page(client: APIClient, version: ModelVersion) -> str:
    response = client.get(reverse("models:version", args=[version.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_an_operator_is_offered_the_other_unarchived_models(client_as: Client) -> None:
    version = ModelVersionFactory(model__name="llama-retrained")
    RegisteredModelFactory(name="llama")
    RegisteredModelFactory(name="old-llama", archived=True)

    page = _version_page(client_as(Role.OPERATOR), version)

    assert "Make this a version of" in page
    form = page.split('aria-label="Move this version"', 1)[1].split("</form>", 1)[0]
    assert ">llama</option>" in form
    assert "old-llama" not in form
    assert ">llama-retrained</option>" not in form


def test_a_viewer_is_not_offered_the_move(client_as: Client) -> None:
    version = ModelVersionFactory()
    RegisteredModelFactory()

    assert "Make this a version of" not in _version_page(client_as(Role.VIEWER), version)


def test_a_version_that_is_not_its_models_only_one_is_not_offered_the_move(client_as: Client) -> None:
    version = ModelVersionFactory(number=2)
    ModelVersionFactory(model=version.model, number=1)
    RegisteredModelFactory()

    assert "Make this a version of" not in _version_page(client_as(Role.OPERATOR), version)


def test_an_operator_moves_a_version_from_its_page(client_as: Client) -> None:
    version = ModelVersionFactory(model__name="llama-retrained", number=1)
    target = ModelVersionFactory(model__name="llama", number=1).model

    response = client_as(Role.OPERATOR).post(
        reverse("models:version_move", args=[version.pk]),
        {"model": target.pk},
        format="multipart",
        follow=True,
    )

    assert response.redirect_chain[-1][0] == reverse("models:version", args=[version.pk])
    assert "llama-retrained v1 is now llama v2" in response.content.decode()
    assert not RegisteredModel.objects.filter(name="llama-retrained").exists()


def test_a_refused_move_on_the_page_says_why(client_as: Client) -> None:
    alias = ModelAliasFactory(name="production")
    target = RegisteredModelFactory()

    response = client_as(Role.OPERATOR).post(
        reverse("models:version_move", args=[alias.version_id]),
        {"model": target.pk},
        format="multipart",
        follow=True,
    )

    assert "production point at" in response.content.decode()
    _unchanged(alias.version)


def test_the_page_move_is_refused_to_viewers(client_as: Client) -> None:
    version = ModelVersionFactory()
    target = RegisteredModelFactory()

    response = client_as(Role.VIEWER).post(
        reverse("models:version_move", args=[version.pk]), {"model": target.pk}, format="multipart"
    )

    assert response.status_code == 403
    _unchanged(version)
