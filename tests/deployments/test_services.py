from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.core import audit
from apps.core.domain.errors import Conflict
from apps.core.domain.statemachine import InvalidTransition
from apps.core.models import AuditEvent
from apps.deployments import services
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import EDITABLE_FIELDS, MAX_WINDOW_S
from apps.models.domain.states import ValidationState
from apps.models.models import ModelVersion
from apps.serving import messages as serving_messages
from apps.serving.domain.states import PlacementState
from tests.deployments.factories import DeploymentFactory, ReleaseFactory, ValidVersionFactory
from tests.fleet.factories import DeviceFactory, NodeFactory
from tests.models.factories import ModelVersionFactory, RegisteredModelFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db


def problems(caught: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return caught.value.message_dict


def test_deployment_create_makes_a_draft() -> None:
    deployment = services.deployment_create(name="chat-prod", description="  the chat endpoint ")

    assert (deployment.state, deployment.description, deployment.replicas) == (
        DeploymentState.DRAFT,
        "the chat endpoint",
        1,
    )


def test_deployment_create_refuses_a_name_that_is_not_url_safe() -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_create(name="Chat Prod")

    assert "lower-case" in problems(caught)["name"][0]


def test_deployment_create_refuses_a_taken_name() -> None:
    DeploymentFactory(name="chat")

    with pytest.raises(ValidationError) as caught:
        services.deployment_create(name="chat")

    assert problems(caught)["name"] == ["A deployment named 'chat' already exists."]


def test_deployment_create_names_every_bad_field_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_create(name="-", replicas=1000, strategy="yolo")

    assert set(problems(caught)) == {"name", "replicas", "strategy"}


def test_deployment_update_changes_only_what_was_given() -> None:
    deployment = DeploymentFactory(description="old", replicas=2)

    services.deployment_update(deployment=deployment, replicas=4)

    deployment.refresh_from_db()
    assert (deployment.description, deployment.replicas) == ("old", 4)


def test_deployment_update_refuses_a_retired_deployment_saying_what_to_do() -> None:
    with pytest.raises(ValidationError, match="cannot be edited; create a new deployment instead"):
        services.deployment_update(deployment=DeploymentFactory(state=DeploymentState.RETIRED), replicas=2)


def test_deployment_update_refuses_to_change_the_model_under_a_live_release() -> None:
    release = ReleaseFactory(state=ReleaseState.PROMOTED)
    deployment = release.deployment
    deployment.current_release = release
    deployment.save()

    with pytest.raises(ValidationError) as caught:
        services.deployment_update(deployment=deployment, registered_model=RegisteredModelFactory())

    assert problems(caught)["registered_model"][0].endswith("Create a new deployment for the other model.")


def test_deployment_update_may_set_the_model_of_a_deployment_without_releases() -> None:
    model = RegisteredModelFactory()

    deployment = services.deployment_update(deployment=DeploymentFactory(), registered_model=model)

    assert deployment.registered_model == model


@pytest.mark.parametrize(
    ("start", "service", "end"),
    [
        (DeploymentState.DRAFT, services.deployment_activate, DeploymentState.ACTIVE),
        (DeploymentState.ACTIVE, services.deployment_pause, DeploymentState.PAUSED),
        (DeploymentState.PAUSED, services.deployment_activate, DeploymentState.ACTIVE),
        (DeploymentState.ACTIVE, services.deployment_retire, DeploymentState.RETIRED),
    ],
)
def test_deployment_moves_through_its_states(start: str, service: Any, end: str) -> None:
    deployment = service(deployment=DeploymentFactory(state=start))

    deployment.refresh_from_db()
    assert deployment.state == end


def test_a_retired_deployment_cannot_come_back() -> None:
    with pytest.raises(InvalidTransition):
        services.deployment_activate(deployment=DeploymentFactory(state=DeploymentState.RETIRED))


def test_retire_is_refused_while_a_release_rolls_out() -> None:
    release = ReleaseFactory(state=ReleaseState.PROGRESSING, deployment__state=DeploymentState.ACTIVE)

    with pytest.raises(ValidationError, match="progressing"):
        services.deployment_retire(deployment=release.deployment)


def test_retire_cancels_pending_releases() -> None:
    release = ReleaseFactory(deployment__state=DeploymentState.ACTIVE)

    services.deployment_retire(deployment=release.deployment)

    release.refresh_from_db()
    assert (release.state, release.reason) == (ReleaseState.CANCELLED, "Its deployment was retired.")


def test_retire_unpins_and_unloads_what_only_its_releases_hold(
    dispatched: list, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a live release on two pinned placements, one of which another deployment's live
    # release also serves (the same version), and a blue-green predecessor still resident
    release = ReleaseFactory(state=ReleaseState.PROMOTED, deployment__state=DeploymentState.ACTIVE)
    deployment = release.deployment
    deployment.current_release = release
    deployment.save()
    own, shared = (
        PlacementFactory(version=release.model_version, state=PlacementState.LOADED, pinned=True)
        for _ in range(2)
    )
    release.placements.add(own, shared)
    kept = ReleaseFactory(deployment=deployment, state=ReleaseState.PROMOTED)
    resident = PlacementFactory(version=kept.model_version, state=PlacementState.LOADED, pinned=True)
    kept.placements.add(resident)
    elsewhere = ReleaseFactory(state=ReleaseState.PROMOTED, model_version=release.model_version)
    elsewhere.placements.add(shared)
    elsewhere.deployment.current_release = elsewhere
    elsewhere.deployment.save()

    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_retire(deployment=deployment)

    for placement in (own, shared, resident):
        placement.refresh_from_db()
    assert [(p.state, p.pinned) for p in (own, resident)] == [(PlacementState.UNLOADING, False)] * 2
    assert (shared.state, shared.pinned) == (PlacementState.LOADED, True)
    unloads = sorted(args[0] for name, args, _ in dispatched if name == serving_messages.PLACEMENT_UNLOAD)
    assert unloads == sorted([own.pk, resident.pk])


def test_state_changes_are_audited_during_a_request(
    rf: Any, operator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    request = rf.post("/api/v1/deployments/1/pause/")
    request.user = operator
    token = audit.bind_request(request)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.deployment_pause(deployment=DeploymentFactory(state=DeploymentState.ACTIVE))
    finally:
        audit.unbind_request(token)

    assert AuditEvent.objects.get(action="pause").changes == {"state": ["active", "paused"]}


def test_release_create_asks_for_a_pending_release() -> None:
    version = ValidVersionFactory()

    release = services.release_create(deployment=DeploymentFactory(), model_version=version)

    assert (release.state, release.model_version, release.strategy) == (
        ReleaseState.PENDING,
        version,
        Strategy.RECREATE,
    )


def test_release_create_sets_the_deployments_model_from_its_first_release() -> None:
    version = ValidVersionFactory()
    deployment = DeploymentFactory()

    services.release_create(deployment=deployment, model_version=version)

    deployment.refresh_from_db()
    assert deployment.registered_model == version.model


@pytest.mark.parametrize(
    "state", [ValidationState.PENDING, ValidationState.VALIDATING, ValidationState.INVALID]
)
def test_release_create_refuses_a_version_that_is_not_valid(state: str) -> None:
    version = ModelVersionFactory(validation_state=state, validation_error="header overruns the file")

    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=DeploymentFactory(), model_version=version)

    assert "Only versions that passed validation can be released" in problems(caught)["model_version"][0]


def test_release_create_says_why_an_invalid_version_is_invalid() -> None:
    version = ModelVersionFactory(validation_state=ValidationState.INVALID, validation_error="bad header")

    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=DeploymentFactory(), model_version=version)

    assert "invalid: bad header" in problems(caught)["model_version"][0]


def test_release_create_refuses_a_version_of_another_model() -> None:
    deployment = DeploymentFactory(registered_model=RegisteredModelFactory(name="llama"))

    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=deployment, model_version=ValidVersionFactory())

    assert "is not a version of 'llama'" in problems(caught)["model_version"][0]


def test_release_create_judges_the_version_as_it_is_now_not_as_the_caller_read_it() -> None:
    llama = RegisteredModelFactory(name="llama")
    deployment = DeploymentFactory(registered_model=llama)
    version = ValidVersionFactory(model=llama)
    stale = type(version).objects.get(pk=version.pk)  # read before the version moved away
    ModelVersion.objects.filter(pk=version.pk).update(model=RegisteredModelFactory(name="other"))

    with pytest.raises(ValidationError) as caught:
        services.release_create(deployment=deployment, model_version=stale)

    assert "is not a version of 'llama'" in problems(caught)["model_version"][0]


def test_release_create_refuses_a_second_release_in_progress_as_a_conflict() -> None:
    first = ReleaseFactory(state=ReleaseState.VERIFYING)

    with pytest.raises(Conflict) as caught:
        services.release_create(
            deployment=first.deployment, model_version=ValidVersionFactory(model=first.model_version.model)
        )

    assert f"already has release #{first.pk} verifying; promote, abort or cancel it first" in str(
        caught.value
    )


def test_release_create_refuses_a_retired_deployment() -> None:
    with pytest.raises(ValidationError) as caught:
        services.release_create(
            deployment=DeploymentFactory(state=DeploymentState.RETIRED), model_version=ValidVersionFactory()
        )

    assert problems(caught)["deployment"][0].endswith(
        "is retired; it takes no new releases. Create a new deployment instead."
    )


def test_release_create_uses_the_deployments_strategy_by_default() -> None:
    deployment = DeploymentFactory(strategy=Strategy.CANARY)

    release = services.release_create(deployment=deployment, model_version=ValidVersionFactory())

    assert (release.strategy, release.steps) == (Strategy.CANARY, [10, 50, 100])


def test_release_create_refuses_steps_for_recreate() -> None:
    with pytest.raises(ValidationError) as caught:
        services.release_create(
            deployment=DeploymentFactory(), model_version=ValidVersionFactory(), steps=[30, 100]
        )

    assert "Only the canary strategy takes steps" in problems(caught)["steps"][0]


def test_release_create_refuses_a_split_that_does_not_add_up() -> None:
    with pytest.raises(ValidationError) as caught:
        services.release_create(
            deployment=DeploymentFactory(),
            model_version=ValidVersionFactory(),
            strategy=Strategy.CANARY,
            steps=[10, 50],
        )

    assert "The last step must be 100" in problems(caught)["steps"][0]


def test_release_create_refuses_more_replicas_than_the_node_has_devices() -> None:
    node = NodeFactory(name="box")
    DeviceFactory(node=node)

    with pytest.raises(ValidationError) as caught:
        services.release_create(
            deployment=DeploymentFactory(node="box", replicas=2), model_version=ValidVersionFactory()
        )

    assert problems(caught)["replicas"] == [
        "2 replica(s) need as many devices that accept placements; 1 does on node 'box'."
    ]


def test_release_create_remembers_the_stable_release_and_sends_a_tick(
    dispatched: list, django_capture_on_commit_callbacks: Any
) -> None:
    stable = ReleaseFactory(state=ReleaseState.PROMOTED)
    deployment = stable.deployment
    deployment.current_release = stable
    deployment.save()

    with django_capture_on_commit_callbacks(execute=True):
        release = services.release_create(
            deployment=deployment, model_version=ValidVersionFactory(model=stable.model_version.model)
        )

    assert release.previous_release == stable
    assert ("apps.deployments.tasks.release_tick", [release.pk]) in [(n, a) for n, a, _ in dispatched]


def test_create_and_update_check_exactly_the_fields_the_api_and_the_pages_offer() -> None:
    # The API's input, the settings form and the admin are built from EDITABLE_FIELDS, the services
    # check with EDITABLE: a field in one and not the other would be offered and then refused, or
    # taken and never offered.
    assert set(services.EDITABLE) == set(EDITABLE_FIELDS)
    assert len(EDITABLE_FIELDS) == len(set(EDITABLE_FIELDS))


def test_deployment_create_takes_the_rollout_settings() -> None:
    deployment = services.deployment_create(
        name="chat",
        environment="production",
        canary_steps=[5, 25, 100],
        slo_p99_ms=250.0,
        slo_error_rate=0.01,
        required_checks=["quality", "health"],
        golden_set=[{"prompt": "2+2=", "expected": "4", "match": "contains"}],
        on_inconclusive="rollback",
        min_samples=50,
    )

    assert (deployment.environment, deployment.canary_steps, deployment.required_checks) == (
        "production",
        [5, 25, 100],
        ["health", "quality"],
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("environment", "qa", "One of ['staging', 'production']"),
        ("canary_steps", [10, 50], "The last step must be 100"),
        ("canary_steps", [], "A list of percentages ending at 100"),
        ("required_checks", ["health", "vibes"], "Unknown check(s) ['vibes']"),
        ("golden_set", [{"prompt": "", "expected": "x"}], "item 1: prompt must be a non-empty string"),
        ("golden_set", [{"prompt": "a", "expected": "b", "match": "fuzzy"}], "match must be one of"),
        (
            "golden_set",
            [{"prompt": "a", "expected": "b", "tolerance": 2}],
            "tolerance must be a number from 0 to 1",
        ),
        ("slo_error_rate", 1.5, "A number from 0 to 1"),
        ("p99_ratio_max", 0.5, "A number at least 1"),
        ("min_samples", 0, "A number from 1 to "),
        ("on_inconclusive", "shrug", "One of ['pause', 'rollback']"),
        ("node", "nowhere", "No node is named 'nowhere'"),
        ("step_pause_s", "soon", "A whole number"),
        ("colour", "blue", "Not a field"),
    ],
)
def test_deployment_update_names_the_field_it_refuses(field: str, value: Any, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_update(deployment=DeploymentFactory(), **{field: value})

    assert reason in problems(caught)[field][0]


@pytest.mark.parametrize("field", ["step_pause_s", "step_timeout_s", "blue_green_keep_s", "abort_grace_s"])
def test_deployment_create_and_update_hold_every_window_to_the_models_bound(field: str) -> None:
    with pytest.raises(ValidationError) as created:
        services.deployment_create(name="chat", **{field: MAX_WINDOW_S + 1})
    with pytest.raises(ValidationError) as updated:
        services.deployment_update(deployment=DeploymentFactory(), **{field: MAX_WINDOW_S + 1})

    assert problems(created)[field] == problems(updated)[field] == [f"A number from 0 to {MAX_WINDOW_S}."]
    deployment = services.deployment_update(deployment=DeploymentFactory(), **{field: MAX_WINDOW_S})
    deployment.refresh_from_db()
    assert getattr(deployment, field) == MAX_WINDOW_S


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("replicas", 65),
        ("replicas", -1),
        ("min_samples", 0),
        ("p99_ratio_max", 0.99),
        ("error_rate_delta_max", 1.01),
        ("slo_error_rate", -0.1),
        ("slo_p99_ms", 0.0),
        ("max_queue", -1),
    ],
)
def test_deployment_update_refuses_a_number_exactly_where_the_model_would(field: str, value: Any) -> None:
    deployment = DeploymentFactory()
    setattr(deployment, field, value)
    with pytest.raises(ValidationError) as by_model:
        deployment.full_clean()
    assert field in by_model.value.message_dict

    with pytest.raises(ValidationError) as caught:
        services.deployment_update(deployment=DeploymentFactory(), **{field: value})

    assert problems(caught)[field][0].startswith("A number ")


def test_deployment_update_refuses_a_number_that_is_not_finite() -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_update(deployment=DeploymentFactory(), p99_ratio_max=float("inf"))

    assert problems(caught)["p99_ratio_max"] == ["A number."]


def test_deployment_update_refuses_a_bulkhead_of_no_requests_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_update(deployment=DeploymentFactory(), max_concurrency=0)

    assert problems(caught)["max_concurrency"][0].startswith("A number from 1 to ")


def test_deployment_update_refuses_several_replicas_on_one_device() -> None:
    with pytest.raises(ValidationError) as caught:
        services.deployment_update(deployment=DeploymentFactory(), device=DeviceFactory(), replicas=2)

    assert "A device holds one replica of a version" in problems(caught)["replicas"][0]


def test_deployment_update_clears_an_optional_field_with_none() -> None:
    deployment = DeploymentFactory(slo_p99_ms=300.0, description="kept")

    services.deployment_update(deployment=deployment, slo_p99_ms=None, description=None)

    deployment.refresh_from_db()
    assert (deployment.slo_p99_ms, deployment.description) == (None, "kept")


def test_release_cancel_withdraws_a_pending_release() -> None:
    release = services.release_cancel(release=ReleaseFactory())

    assert (release.state, release.reason) == (ReleaseState.CANCELLED, "Cancelled before it started.")
    assert release.finished_at is not None


@pytest.mark.parametrize(
    ("state", "what_to_do"),
    [
        (ReleaseState.PROGRESSING, "abort it instead"),
        (ReleaseState.PROMOTED, "roll it back instead"),
        (ReleaseState.ROLLED_BACK, "it has ended, so there is nothing to withdraw"),
    ],
)
def test_release_cancel_of_a_started_release_says_what_to_do_instead(state: str, what_to_do: str) -> None:
    release = ReleaseFactory(state=state)

    with pytest.raises(Conflict) as caught:
        services.release_cancel(release=release)

    label = release.get_state_display().lower()
    assert str(caught.value) == (
        f"Release #{release.pk} is {label}; only a pending release can be cancelled: {what_to_do}."
    )
    release.refresh_from_db()
    assert release.state == state
