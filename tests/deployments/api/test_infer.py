"""POST /api/v1/deployments/{name}/infer/ and GET /api/v1/deployments/{name}/figures/: answers with
the release and version that served them, refusals as serving's, who may call them, their
queries, and their OpenAPI schema. No device worker runs here (tests/deployments/live.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.deployments import figures, services
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, KeyGrant, Release
from tests.deployments.factories import DeploymentFactory
from tests.deployments.live import ASK, release_on, serving

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("beats_current")]
Client = Callable[[Role | None], APIClient]


@pytest.fixture
def operator_api(client_as: Client) -> APIClient:
    return client_as(Role.OPERATOR)


def infer(client: APIClient, ref: object, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/api/v1/deployments/{ref}/infer/", body or ASK, format="json")


def test_an_answer_carries_the_release_and_version_in_body_and_headers(
    operator_api: APIClient, asked: list[int]
) -> None:
    deployment, stable, _ = serving()

    response = infer(operator_api, deployment.name)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert response["X-MOC-Release"] == str(stable.pk)
    assert response["X-MOC-Version"] == str(stable.model_version_id)
    assert body["deployment"] == deployment.name
    assert body["side"] == "stable"
    assert body["release"] == {"id": stable.pk, "strategy": stable.strategy, "state": "promoted"}
    assert body["version"]["id"] == stable.model_version_id
    assert body["version"]["model"] == stable.model_version.model.name
    assert body["result"] == {"text": str(asked[0])}
    assert body["total_ms"] > 0


def test_a_deployment_is_also_reached_by_its_id(operator_api: APIClient, asked: list[int]) -> None:
    deployment, _, _ = serving()

    assert infer(operator_api, deployment.pk).status_code == 200


def test_a_key_and_a_release_travel_to_the_route(operator_api: APIClient, asked: list[int]) -> None:
    deployment, stable, canary = serving(canary_percent=50)
    assert canary is not None

    pinned = infer(operator_api, deployment.name, ASK | {"release": canary.pk})
    keyed = {
        infer(operator_api, deployment.name, ASK | {"key": "user-42"})["X-MOC-Release"] for _ in range(5)
    }

    assert pinned["X-MOC-Release"] == str(canary.pk)
    assert len(keyed) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": {"prompt": "hi"}}, "task"),
        ({"task": "generate", "input": {"max_new_tokens": 4}}, "input"),
        ({"task": "generate", "input": {"prompt": "hi", "max_new_tokens": 0}}, "input"),
        (ASK | {"release": "x"}, "release"),
        (ASK | {"key": "k" * 300}, "key"),
    ],
)
def test_bad_requests_are_400s_naming_the_field(
    operator_api: APIClient, asked: list[int], body: dict[str, Any], field: str
) -> None:
    deployment, _, _ = serving()

    response = infer(operator_api, deployment.name, body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert field in response.json()["fields"]
    assert asked == []


def test_a_placement_cannot_be_chosen_by_the_caller(operator_api: APIClient, asked: list[int]) -> None:
    deployment, _, _ = serving()

    response = infer(operator_api, deployment.name, ASK | {"placement": 999})

    assert response.status_code == 200  # the field is not the deployment's: ignored
    assert asked != [999]


def test_a_pin_to_another_release_is_a_400_naming_release(operator_api: APIClient, asked: list[int]) -> None:
    deployment, _, _ = serving()
    ended = release_on(deployment, state=ReleaseState.ROLLED_BACK)

    response = infer(operator_api, deployment.name, ASK | {"release": ended.pk})

    assert response.status_code == 400
    assert response.json()["fields"]["release"] == [response.json()["detail"]]


def test_a_paused_deployment_is_a_409(operator_api: APIClient) -> None:
    deployment, _, _ = serving()
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.PAUSED)

    response = infer(operator_api, deployment.name)

    assert response.status_code == 409
    assert response.json()["error"] == "not_serving"
    assert "is paused" in response.json()["detail"]


def test_a_deployment_with_nothing_live_is_a_409(operator_api: APIClient) -> None:
    deployment = DeploymentFactory(state=DeploymentState.ACTIVE)

    response = infer(operator_api, deployment.name)

    assert response.status_code == 409
    assert "no release is live yet" in response.json()["detail"]


def test_a_release_still_loading_says_to_try_again_shortly(operator_api: APIClient) -> None:
    deployment = DeploymentFactory(state=DeploymentState.ACTIVE)
    loading = release_on(deployment, state=ReleaseState.LOADING, placed=False)

    response = infer(operator_api, deployment.name, ASK | {"release": loading.pk})

    assert response.status_code == 409
    assert response.json()["error"] == "not_loaded"
    assert f"release #{loading.pk}" in response.json()["detail"]
    assert "it is loading, try again shortly" in response.json()["detail"]
    assert response["Retry-After"] == "2"


def test_an_unknown_deployment_is_a_404(operator_api: APIClient) -> None:
    assert infer(operator_api, "no-such-thing").status_code == 404


@pytest.mark.parametrize(("role", "status"), [(None, 401), (Role.VIEWER, 403), (Role.ADMIN, 200)])
def test_operators_and_admins_may_ask_a_deployment_others_not(
    client_as: Client, asked: list[int], role: Role | None, status: int
) -> None:
    deployment, _, _ = serving()

    assert infer(client_as(role), deployment.name).status_code == status


def test_a_viewer_api_key_may_not_ask(key_client: Callable[..., APIClient], asked: list[int]) -> None:
    deployment, _, _ = serving()

    assert infer(key_client(Role.VIEWER, owner_role=Role.OPERATOR), deployment.name).status_code == 403


def test_a_key_granted_some_deployments_asks_only_those_and_none_once_they_are_taken_back(
    key_client: Callable[..., APIClient], asked: list[int]
) -> None:
    granted, _, _ = serving()
    other, _, _ = serving()
    client = key_client(Role.OPERATOR)
    key = ApiKey.objects.get(prefix=client.key_secret.partition(".")[0])
    services.key_grant_create(deployment=granted, key=key)

    assert infer(client, granted.name).status_code == 200
    hidden = infer(client, other.name)
    assert hidden.status_code == 404  # as /v1/ answers it
    assert (
        hidden.json()["detail"]
        == f"Deployment '{other.name}' does not exist or this API key may not call it."
    )

    services.key_grant_delete(grant=KeyGrant.objects.get(key=key))

    assert infer(client, granted.name).status_code == 404
    assert infer(key_client(Role.OPERATOR), other.name).status_code == 200  # other keys: every one


def test_a_request_takes_few_queries(
    operator_api: APIClient, asked: list[int], django_assert_max_num_queries: Any
) -> None:
    deployment, _, _ = serving(canary_percent=50)
    # the session, the user and their permissions (4); the deployment, its canary, the loaded
    # placements of both, serving's candidates (4)
    with django_assert_max_num_queries(8):
        assert infer(operator_api, deployment.name).status_code == 200


def test_figures_show_each_live_release_per_bucket_with_totals(client_as: Client) -> None:
    deployment, stable, canary = serving(canary_percent=10)
    assert canary is not None
    client, at = redis_client(), time.time() - figures.BUCKET_S  # in the last bucket that is over
    for latency in (10, 20, 30):
        figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=latency, at=at)
    figures.record(client, release_id=canary.pk, outcome=Outcome.ERROR, latency_ms=500, at=at)
    figures.record(client, release_id=canary.pk, outcome=Outcome.REFUSED, latency_ms=1, at=at)
    figures.record(client, release_id=canary.pk, outcome=Outcome.REJECTED, latency_ms=1, at=at)

    response = client_as(Role.VIEWER).get(f"/api/v1/deployments/{deployment.name}/figures/", {"seconds": 60})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["deployment"], body["seconds"], body["bucket_s"]) == (deployment.name, 60, 5)
    by_id = {r["id"]: r for r in body["releases"]}
    assert set(by_id) == {stable.pk, canary.pk}
    assert (by_id[stable.pk]["side"], by_id[stable.pk]["traffic_percent"]) == ("stable", 90)
    assert (by_id[canary.pk]["side"], by_id[canary.pk]["traffic_percent"]) == ("canary", 10)
    totals = by_id[stable.pk]["totals"]
    assert (totals["requests"], totals["errors"], totals["error_rate"]) == (3, 0, 0.0)
    assert totals["rps"] == pytest.approx(3 / 60)
    assert 10 <= totals["p50_ms"] <= 30
    canary_totals = by_id[canary.pk]["totals"]
    assert (canary_totals["errors"], canary_totals["refused"], canary_totals["rejected"]) == (1, 1, 1)
    series = by_id[stable.pk]["series"]
    assert len(series) == 12  # whole buckets, the one still filling left out
    assert sum(b["requests"] for b in series) == 3
    assert series[-1]["t"] % 5 == 0
    assert {"t", "requests", "errors", "refused", "rejected", "rps", "p50_ms", "p99_ms", "error_rate"} <= set(
        series[-1]
    )


def test_figures_over_five_seconds_are_the_last_whole_bucket_not_the_one_filling(client_as: Client) -> None:
    """The span took in the bucket still filling and divided by the nominal 5 s: rates up to twice
    the real ones."""
    deployment, stable, _ = serving()
    client, now = redis_client(), time.time()
    for _ in range(10):
        figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=10, at=now - 5)
        figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=10, at=now)

    body = (
        client_as(Role.VIEWER).get(f"/api/v1/deployments/{deployment.name}/figures/", {"seconds": 5}).json()
    )

    [release] = body["releases"]
    assert (body["seconds"], release["totals"]["requests"], release["totals"]["rps"]) == (5, 10, 2.0)


def test_a_rolled_back_releases_answer_says_it_answered_as_the_fallback(
    operator_api: APIClient, asked: list[int]
) -> None:
    deployment, bad, _ = serving()
    previous = release_on(deployment, state=ReleaseState.PROMOTED, traffic_percent=100, placed=False)
    Release.objects.filter(pk=bad.pk).update(
        state=ReleaseState.ROLLED_BACK, previous_release=previous, promoted_at=timezone.now()
    )
    Deployment.objects.filter(pk=deployment.pk).update(current_release=previous)

    response = infer(operator_api, deployment.name)

    assert response.status_code == 200, response.json()
    assert (response.json()["side"], response.json()["release"]["state"]) == ("fallback", "rolled_back")
    assert response["X-MOC-Release"] == str(bad.pk)


@pytest.mark.parametrize("seconds", ["0", "x", "999999"])
def test_figures_refuse_a_span_they_cannot_give_naming_seconds(client_as: Client, seconds: str) -> None:
    deployment, _, _ = serving()

    response = client_as(Role.VIEWER).get(
        f"/api/v1/deployments/{deployment.name}/figures/", {"seconds": seconds}
    )

    assert response.status_code == 400
    assert "seconds" in response.json()["fields"]


def test_figures_need_a_role(client_as: Client) -> None:
    deployment, _, _ = serving()

    assert client_as(None).get(f"/api/v1/deployments/{deployment.name}/figures/").status_code == 401


def test_the_schema_documents_both_endpoints(client_as: Client) -> None:
    schema = client_as(Role.VIEWER).get("/api/schema/", {"format": "json"}).json()

    infer_op = schema["paths"]["/api/v1/deployments/{name}/infer/"]["post"]
    assert {"200", "400", "409", "429", "503", "504"} <= set(infer_op["responses"])
    assert "key" in schema["components"]["schemas"]["DeploymentInferInputRequest"]["properties"]
    figures_op = schema["paths"]["/api/v1/deployments/{name}/figures/"]["get"]
    assert any(p["name"] == "seconds" for p in figures_op["parameters"])
