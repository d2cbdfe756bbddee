from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment
from tests.deployments.factories import DeploymentFactory, ReleaseFactory
from tests.models.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/deployments/"
Client = Callable[[Role | None], APIClient]


def detail(pk: int | str, suffix: str = "") -> str:
    return f"{URL}{pk}/{suffix}"


def test_list_shows_deployments_to_a_viewer(client_as: Client) -> None:
    release = ReleaseFactory(deployment__name="chat")

    response = client_as(Role.VIEWER).get(URL)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["name"], row["state"], row["release_count"], row["current_release"]) == (
        "chat",
        "draft",
        1,
        None,
    )
    assert row["id"] == release.deployment_id


def test_list_refuses_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get(URL).status_code == 401


def test_list_filters_by_state(client_as: Client) -> None:
    DeploymentFactory(name="live", state=DeploymentState.ACTIVE)
    DeploymentFactory(name="idea")

    response = client_as(Role.VIEWER).get(URL, {"state": "active"})

    assert [row["name"] for row in response.json()["results"]] == ["live"]


@pytest.mark.parametrize("ref", ["id", "name"])
def test_a_deployment_is_found_by_its_id_or_its_name(client_as: Client, ref: str) -> None:
    deployment = DeploymentFactory(name="chat-prod")

    response = client_as(Role.VIEWER).get(detail(deployment.pk if ref == "id" else "chat-prod"))

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["name"]) == (deployment.pk, "chat-prod")


def test_a_deployment_found_by_name_takes_its_actions(client_as: Client) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).post(f"{URL}chat/activate/")

    assert response.status_code == 200
    assert response.json()["state"] == "active"


def test_an_unknown_name_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(f"{URL}no-such-thing/").status_code == 404


def test_output_carries_every_setting_the_split_and_the_release_in_progress(client_as: Client) -> None:
    stable = ReleaseFactory(deployment__name="chat", state=ReleaseState.PROMOTED, traffic_percent=90)
    deployment = stable.deployment
    deployment.current_release = stable
    deployment.save()
    canary = ReleaseFactory(
        deployment=deployment,
        state=ReleaseState.PROGRESSING,
        strategy="canary",
        steps=[10, 50, 100],
        traffic_percent=10,
        previous_release=stable,
    )

    body = client_as(Role.VIEWER).get(detail("chat")).json()

    assert body["split"]["stable"]["id"] == stable.pk
    assert (body["split"]["canary"]["id"], body["split"]["canary_percent"]) == (canary.pk, 10)
    assert body["open_release"]["id"] == canary.pk
    assert body["current_release"]["id"] == stable.pk
    for field in [
        "environment", "node", "device", "max_concurrency", "max_queue", "slo_p99_ms", "slo_error_rate",
        "required_checks", "golden_set", "canary_steps", "step_pause_s", "step_timeout_s", "min_samples",
        "p99_ratio_max", "error_rate_delta_max", "on_inconclusive", "blue_green_keep_s", "abort_grace_s",
        "owner",
    ]:  # fmt: skip
        assert field in body
    assert (body["environment"], body["canary_steps"], body["on_inconclusive"]) == (
        "staging",
        [10, 50, 100],
        "pause",
    )


def test_a_release_still_verifying_takes_no_share_of_the_split(client_as: Client) -> None:
    release = ReleaseFactory(deployment__name="chat", state=ReleaseState.VERIFYING)

    body = client_as(Role.VIEWER).get(detail("chat")).json()

    assert body["split"] == {"stable": None, "canary": None, "canary_percent": 0}
    assert body["open_release"]["id"] == release.pk


def test_retrieve_of_an_unknown_deployment_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(detail(999_999)).status_code == 404


def test_operator_creates_a_deployment(client_as: Client) -> None:
    model = RegisteredModelFactory(name="llama")

    response = client_as(Role.OPERATOR).post(
        URL, {"name": "chat-prod", "registered_model": model.pk, "replicas": 2}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["state"], body["replicas"], body["registered_model"]["name"]) == (
        "chat-prod",
        "draft",
        2,
        "llama",
    )


def test_operator_creates_a_deployment_with_its_slos_analysis_and_golden_set(client_as: Client) -> None:
    golden = [{"prompt": "2+2=", "expected": "4", "match": "contains"}]

    response = client_as(Role.OPERATOR).post(
        URL,
        {
            "name": "chat-prod",
            "environment": "production",
            "slo_p99_ms": 250,
            "slo_error_rate": 0.01,
            "required_checks": ["health", "quality"],
            "golden_set": golden,
            "canary_steps": [25, 100],
            "min_samples": 50,
            "on_inconclusive": "rollback",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    deployment = Deployment.objects.get(name="chat-prod")
    assert (deployment.environment, deployment.slo_p99_ms, deployment.slo_error_rate) == (
        "production",
        250,
        0.01,
    )
    assert (deployment.required_checks, deployment.golden_set) == (["health", "quality"], golden)
    assert (deployment.canary_steps, deployment.min_samples, deployment.on_inconclusive) == (
        [25, 100],
        50,
        "rollback",
    )


def test_viewer_cannot_create_a_deployment(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(URL, {"name": "chat"}, format="json")

    assert response.status_code == 403
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": "Not Valid"}, "name"),
        ({"name": "chat", "replicas": -1}, "replicas"),
        ({"name": "chat", "strategy": "big_bang"}, "strategy"),
        ({"name": "chat", "registered_model": 999_999}, "registered_model"),
        ({"name": "chat", "environment": "moon"}, "environment"),
        ({"name": "chat", "slo_error_rate": 1.5}, "slo_error_rate"),
        ({"name": "chat", "required_checks": ["health", "vibes"]}, "required_checks"),
        ({"name": "chat", "golden_set": [{"expected": "4"}]}, "golden_set"),
        (
            {"name": "chat", "golden_set": [{"prompt": "2+2=", "expected": "4", "match": "roughly"}]},
            "golden_set",
        ),
        ({"name": "chat", "canary_steps": [50, 10]}, "canary_steps"),
        ({"name": "chat", "canary_steps": [10, 50]}, "canary_steps"),
        ({"name": "chat", "canary_steps": []}, "canary_steps"),
        ({"name": "chat", "abort_grace_s": 10**15}, "abort_grace_s"),
        ({"name": "chat", "blue_green_keep_s": 7 * 86_400 + 1}, "blue_green_keep_s"),
        ({"name": "chat", "p99_ratio_max": 0.5}, "p99_ratio_max"),
        ({"name": "chat", "on_inconclusive": "shrug"}, "on_inconclusive"),
    ],
)
def test_create_names_the_bad_field(client_as: Client, payload: dict[str, Any], field: str) -> None:
    response = client_as(Role.OPERATOR).post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_create_refuses_a_taken_name(client_as: Client) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).post(URL, {"name": "chat"}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"]["name"] == ["A deployment named 'chat' already exists."]


def test_operator_edits_a_deployment(client_as: Client) -> None:
    deployment = DeploymentFactory(replicas=1)

    response = client_as(Role.OPERATOR).patch(detail(deployment.pk), {"replicas": 3}, format="json")

    assert response.status_code == 200
    assert response.json()["replicas"] == 3


def test_operator_edits_a_deployment_by_name(client_as: Client) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).patch(
        detail("chat"), {"slo_p99_ms": 120, "canary_steps": [5, 20, 100]}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["slo_p99_ms"], response.json()["canary_steps"]) == (120, [5, 20, 100])


def test_an_edit_names_the_bad_field(client_as: Client) -> None:
    DeploymentFactory(name="chat")

    response = client_as(Role.OPERATOR).patch(detail("chat"), {"canary_steps": [10, 60]}, format="json")

    assert response.status_code == 400
    assert "100" in response.json()["fields"]["canary_steps"][0]


@pytest.mark.parametrize("field", ["abort_grace_s", "blue_green_keep_s", "step_pause_s", "step_timeout_s"])
def test_an_edit_refuses_a_window_past_a_week_naming_it(client_as: Client, field: str) -> None:
    """A window of 10**15 s was stored, and promoting the release later failed with an overflow."""
    DeploymentFactory(name="chat")

    too_long = client_as(Role.OPERATOR).patch(detail("chat"), {field: 10**15}, format="json")
    a_week = client_as(Role.OPERATOR).patch(detail("chat"), {field: 7 * 86_400}, format="json")

    assert too_long.status_code == 400
    assert list(too_long.json()["fields"]) == [field]
    assert (a_week.status_code, a_week.json()[field]) == (200, 7 * 86_400)


@pytest.mark.parametrize("ref", ["%C2%B2", "%D9%A1", "9" * 23])
def test_a_ref_of_non_ascii_digits_or_past_any_id_is_404(client_as: Client, ref: str) -> None:
    """'²' and '١' are digits to str.isdigit() but not to int(): the traffic endpoints answered 500."""
    DeploymentFactory(name="chat")
    viewer, operator = client_as(Role.VIEWER), client_as(Role.OPERATOR)

    assert viewer.get(detail(ref)).status_code == 404
    assert viewer.get(detail(ref, "figures/")).status_code == 404
    ask = {"task": "generate", "input": {"prompt": "hi"}}
    assert operator.post(detail(ref, "infer/"), ask, format="json").status_code == 404


def test_the_name_cannot_be_changed(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")

    client_as(Role.OPERATOR).patch(detail(deployment.pk), {"name": "other"}, format="json")

    deployment.refresh_from_db()
    assert deployment.name == "chat"


def test_viewer_cannot_edit_a_deployment(client_as: Client) -> None:
    deployment = DeploymentFactory()

    assert (
        client_as(Role.VIEWER).patch(detail(deployment.pk), {"replicas": 3}, format="json").status_code == 403
    )


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        (DeploymentState.DRAFT, "activate", "active"),
        (DeploymentState.ACTIVE, "pause", "paused"),
        (DeploymentState.PAUSED, "retire", "retired"),
    ],
)
def test_operator_moves_a_deployment_through_its_states(
    client_as: Client, start: str, action: str, end: str
) -> None:
    deployment = DeploymentFactory(state=start)

    response = client_as(Role.OPERATOR).post(detail(deployment.pk, f"{action}/"))

    assert response.status_code == 200
    assert response.json()["state"] == end


def test_pausing_a_draft_is_a_409(client_as: Client) -> None:
    deployment = DeploymentFactory()

    response = client_as(Role.OPERATOR).post(detail(deployment.pk, "pause/"))

    assert response.status_code == 409
    assert "cannot go from 'draft' to 'paused'" in response.json()["detail"]


def test_viewer_cannot_retire_a_deployment(client_as: Client) -> None:
    deployment = DeploymentFactory(state=DeploymentState.ACTIVE)

    assert client_as(Role.VIEWER).post(detail(deployment.pk, "retire/")).status_code == 403


def test_deployments_cannot_be_deleted_only_retired(client_as: Client) -> None:
    deployment = DeploymentFactory()

    response = client_as(Role.ADMIN).delete(detail(deployment.pk))

    assert response.status_code == 405
    assert Deployment.objects.filter(pk=deployment.pk).exists()
