from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release, ReleaseEvent
from apps.models.domain.states import ValidationState
from tests.deployments.factories import DeploymentFactory, ReleaseFactory, ValidVersionFactory
from tests.fleet.factories import DeviceFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _a_device_to_place_on(dispatched: list) -> None:
    """Releases are refused when no device could take their replicas; what they dispatch is
    only recorded."""
    DeviceFactory()


URL = "/api/v1/releases/"
Client = Callable[[Role | None], APIClient]


def detail(pk: int, suffix: str = "") -> str:
    return f"{URL}{pk}/{suffix}"


def override_the_gate(client: APIClient) -> Any:
    """Ask for a release to a new production deployment overriding the staging gate."""
    production = DeploymentFactory(environment="production")
    body = {"deployment": production.pk, "model_version": ValidVersionFactory().pk, "override_gate": True}
    return client.post(URL, body, format="json")


def test_list_shows_releases_to_a_viewer(client_as: Client) -> None:
    release = ReleaseFactory(deployment__name="chat")

    response = client_as(Role.VIEWER).get(URL)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["id"], row["state"], row["deployment"]["name"]) == (release.pk, "pending", "chat")
    assert row["model_version"]["id"] == release.model_version_id


def test_list_filters_by_deployment_name(client_as: Client) -> None:
    wanted = ReleaseFactory(deployment__name="chat")
    ReleaseFactory(deployment__name="embed")

    response = client_as(Role.VIEWER).get(URL, {"deployment_name": "chat"})

    assert [row["id"] for row in response.json()["results"]] == [wanted.pk]


def test_retrieve_of_an_unknown_release_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(detail(999_999)).status_code == 404


def test_operator_asks_for_a_canary_release_with_its_steps(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")
    version = ValidVersionFactory()

    response = client_as(Role.OPERATOR).post(
        URL,
        {"deployment": "chat", "model_version": version.pk, "strategy": "canary", "steps": [20, 100]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["state"], body["strategy"], body["steps"], body["step_index"], body["traffic_percent"]) == (
        "pending",
        "canary",
        [20, 100],
        0,
        0,
    )
    assert body["deployment"]["id"] == deployment.pk
    for field in ["previous_release", "gate_overridden_by", "promoted_at", "reason", "resume_to"]:
        assert field in body


def test_a_production_release_without_staging_verification_is_refused_naming_the_version(
    client_as: Client,
) -> None:
    deployment = DeploymentFactory(environment="production")

    response = client_as(Role.OPERATOR).post(
        URL, {"deployment": deployment.pk, "model_version": ValidVersionFactory().pk}, format="json"
    )

    assert response.status_code == 400
    assert "model_version" in response.json()["fields"]


def test_an_operator_cannot_override_the_staging_gate(client_as: Client) -> None:
    response = override_the_gate(client_as(Role.OPERATOR))

    assert response.status_code in (400, 403)
    assert not Release.objects.exists()


def test_an_admin_overrides_the_staging_gate_and_is_named_on_the_release(client_as: Client) -> None:
    response = override_the_gate(client_as(Role.ADMIN))

    assert response.status_code == 201, response.json()
    assert response.json()["gate_overridden_by"]["username"].startswith("admin")


def test_an_admins_operator_key_cannot_override_the_staging_gate(
    key_client: Callable[..., APIClient],
) -> None:
    # given: a key scoped to operator, owned by an admin
    client = key_client(Role.OPERATOR, owner_role=Role.ADMIN)

    response = override_the_gate(client)

    assert response.status_code == 400
    assert (
        "this request acts as operator (its API key's role)" in response.json()["fields"]["override_gate"][0]
    )
    assert not Release.objects.exists()


def test_an_admin_key_overrides_the_staging_gate(key_client: Callable[..., APIClient]) -> None:
    response = override_the_gate(key_client(Role.ADMIN))

    assert response.status_code == 201, response.json()


def test_a_second_release_while_one_is_open_is_refused(client_as: Client) -> None:
    open_release = ReleaseFactory(state=ReleaseState.PROGRESSING)

    response = client_as(Role.OPERATOR).post(
        URL,
        {"deployment": open_release.deployment_id, "model_version": ValidVersionFactory().pk},
        format="json",
    )

    assert response.status_code == 409
    assert f"#{open_release.pk}" in response.json()["detail"]


def test_viewer_cannot_ask_for_a_release(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(
        URL, {"deployment": DeploymentFactory().pk, "model_version": ValidVersionFactory().pk}, format="json"
    )

    assert response.status_code == 403
    assert not Release.objects.exists()


def test_a_release_of_an_unvalidated_version_is_a_400_on_model_version(client_as: Client) -> None:
    version = ModelVersionFactory(validation_state=ValidationState.PENDING)

    response = client_as(Role.OPERATOR).post(
        URL, {"deployment": DeploymentFactory().pk, "model_version": version.pk}, format="json"
    )

    assert response.status_code == 400
    assert "passed validation" in response.json()["fields"]["model_version"][0]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model_version": "valid"}, "deployment"),
        ({"deployment": 999_999, "model_version": "valid"}, "deployment"),
        ({"deployment": "existing"}, "model_version"),
        ({"deployment": "existing", "model_version": "valid", "strategy": "yolo"}, "strategy"),
        ({"deployment": "no-such-deployment", "model_version": "valid"}, "deployment"),
        (
            {"deployment": "existing", "model_version": "valid", "strategy": "canary", "steps": [10, 50]},
            "steps",
        ),
        (
            {"deployment": "existing", "model_version": "valid", "strategy": "recreate", "steps": [100]},
            "steps",
        ),
        ({"deployment": "existing", "model_version": "valid", "steps": [0, 100]}, "steps"),
    ],
)
def test_create_names_the_bad_field(client_as: Client, payload: dict[str, Any], field: str) -> None:
    stand_ins = {"existing": DeploymentFactory().pk, "valid": ValidVersionFactory().pk}
    payload = {
        key: stand_ins.get(value, value) if isinstance(value, str) else value
        for key, value in payload.items()
    }

    response = client_as(Role.OPERATOR).post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_operator_cancels_a_pending_release(client_as: Client) -> None:
    release = ReleaseFactory()

    response = client_as(Role.OPERATOR).post(detail(release.pk, "cancel/"))

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"


def test_cancel_of_a_release_rolling_out_is_a_409(client_as: Client) -> None:
    release = ReleaseFactory(state=ReleaseState.PROGRESSING)

    assert client_as(Role.OPERATOR).post(detail(release.pk, "cancel/")).status_code == 409


def test_viewer_cannot_cancel_a_release(client_as: Client) -> None:
    release = ReleaseFactory()

    assert client_as(Role.VIEWER).post(detail(release.pk, "cancel/")).status_code == 403


def _promoted(deployment: Deployment) -> Release:
    stable = ReleaseFactory(deployment=deployment, state=ReleaseState.PROMOTED, traffic_percent=100)
    deployment.current_release = stable
    deployment.save()
    return stable


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        (ReleaseState.PROGRESSING, "promote", "promoted"),
        (ReleaseState.PROGRESSING, "pause", "paused"),
        (ReleaseState.PROGRESSING, "abort", "aborted"),
        (ReleaseState.PROGRESSING, "rollback", "rolled_back"),
        (ReleaseState.VERIFYING, "abort", "aborted"),
    ],
)
def test_operator_acts_on_a_release(client_as: Client, start: str, action: str, end: str) -> None:
    deployment = DeploymentFactory(state=DeploymentState.ACTIVE)
    stable = _promoted(deployment)
    release = ReleaseFactory(
        deployment=deployment, state=start, strategy="canary", steps=[10, 100], traffic_percent=10,
        previous_release=stable,
    )  # fmt: skip

    response = client_as(Role.OPERATOR).post(
        detail(release.pk, f"{action}/"), {"reason": "looks off"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["state"] == end
    [event] = ReleaseEvent.objects.filter(release=release, cause=ReleaseEvent.Cause.OPERATOR, to_state=end)
    assert event.actor.username.startswith("operator")


def test_a_paused_release_resumes_where_it_was(client_as: Client) -> None:
    release = ReleaseFactory(state=ReleaseState.PAUSED, resume_to=ReleaseState.PROGRESSING)

    response = client_as(Role.OPERATOR).post(detail(release.pk, "resume/"))

    assert response.status_code == 200
    assert response.json()["state"] == "progressing"


@pytest.mark.parametrize(
    ("start", "action"),
    [
        (ReleaseState.PENDING, "promote"),
        (ReleaseState.ABORTED, "abort"),
        (ReleaseState.PROGRESSING, "resume"),
        (ReleaseState.PROMOTED, "pause"),
        (ReleaseState.PENDING, "rollback"),
    ],
)
def test_an_action_the_state_forbids_is_a_409_saying_why(client_as: Client, start: str, action: str) -> None:
    release = ReleaseFactory(state=start)

    response = client_as(Role.OPERATOR).post(detail(release.pk, f"{action}/"))

    assert response.status_code == 409
    assert f"Release #{release.pk}" in response.json()["detail"]
    release.refresh_from_db()
    assert release.state == start


def test_a_rollback_with_nothing_to_go_back_to_is_a_409(client_as: Client) -> None:
    release = ReleaseFactory(state=ReleaseState.PROGRESSING)

    response = client_as(Role.OPERATOR).post(detail(release.pk, "rollback/"))

    assert response.status_code == 409
    assert "previous release" in response.json()["detail"]


def test_an_action_reason_longer_than_300_characters_is_a_400_on_reason(client_as: Client) -> None:
    release = ReleaseFactory(state=ReleaseState.PROGRESSING)

    response = client_as(Role.OPERATOR).post(
        detail(release.pk, "pause/"), {"reason": "x" * 301}, format="json"
    )

    assert response.status_code == 400
    assert "reason" in response.json()["fields"]


@pytest.mark.parametrize("action", ["promote", "pause", "resume", "abort", "rollback"])
def test_a_viewer_cannot_act_on_a_release(client_as: Client, action: str) -> None:
    release = ReleaseFactory(state=ReleaseState.PROGRESSING)

    assert client_as(Role.VIEWER).post(detail(release.pk, f"{action}/")).status_code == 403
    release.refresh_from_db()
    assert release.state == ReleaseState.PROGRESSING


def test_a_releases_timeline_lists_its_events_oldest_first_with_cause_and_actor(
    client_as: Client, operator: object
) -> None:
    release = ReleaseFactory(state=ReleaseState.ABORTED)
    ReleaseEvent.objects.create(release=release, kind="transition", from_state="pending", to_state="loading")
    ReleaseEvent.objects.create(
        release=release,
        kind="transition",
        from_state="progressing",
        to_state="aborted",
        traffic_percent=0,
        cause=ReleaseEvent.Cause.OPERATOR,
        actor=operator,
        message="p99 doubled",
    )
    ReleaseEvent.objects.create(release=ReleaseFactory(), kind="note", message="another release's")

    response = client_as(Role.VIEWER).get(detail(release.pk, "events/"))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["to_state"], r["cause"], r["message"]) for r in rows] == [
        ("loading", "engine", ""),
        ("aborted", "operator", "p99 doubled"),
    ]
    assert rows[1]["actor"]["username"] == "operator"
    assert rows[1]["traffic_percent"] == 0
