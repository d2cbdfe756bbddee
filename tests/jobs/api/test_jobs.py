from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core import redis_clients, workers
from apps.core.domain.roles import Role
from apps.jobs import runners
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from tests.jobs.factories import JobEventFactory, JobFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"
Client = Callable[[Role | None], APIClient]


def detail(pk: int, suffix: str = "") -> str:
    return f"{URL}{pk}/{suffix}"


def test_list_shows_jobs_to_a_viewer(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING, progress=0.5, message="checking redis")

    response = client_as(Role.VIEWER).get(URL)

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["id"], row["kind"], row["state"], row["progress"]) == (job.pk, "selftest", "running", 0.5)
    assert row["terminal"] is False


def test_list_refuses_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get(URL).status_code == 401


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "failed"}, ["failed"]),
        ({"queue": "gpu.n1.0"}, ["gpu"]),
        ({"kind": "benchmark"}, ["benchmark"]),
    ],
)
def test_list_filters_by_state_queue_and_kind(
    client_as: Client, params: dict[str, str], expected: list[str]
) -> None:
    JobFactory(message="failed", state=JobState.FAILED)
    JobFactory(message="gpu", queue="gpu.n1.0")
    JobFactory(message="benchmark", kind=JobKind.BENCHMARK)

    response = client_as(Role.VIEWER).get(URL, params)

    assert [row["message"] for row in response.json()["results"]] == expected


def test_list_filters_by_model_version(client_as: Client) -> None:
    version = ModelVersionFactory()
    job = JobFactory(model_version=version)
    JobFactory()

    response = client_as(Role.VIEWER).get(URL, {"model_version": version.pk})

    assert [row["id"] for row in response.json()["results"]] == [job.pk]


def test_list_rejects_an_unknown_state_naming_the_filter(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get(URL, {"state": "exploded"})

    assert response.status_code == 400
    assert "state" in response.json()["fields"]


def test_retrieve_of_an_unknown_job_is_404(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get(detail(999_999))

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_operator_creates_a_selftest_job(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(URL, {"kind": "selftest", "priority": 70}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["state"], body["queue"], body["priority"]) == (
        "selftest",
        "queued",
        "default",
        70,
    )
    assert body["created_by"]["username"].startswith("operator")


def test_create_with_an_operator_api_key_works(key_client: Callable[..., APIClient]) -> None:
    response = key_client(Role.OPERATOR).post(URL, {"kind": "selftest"}, format="json")

    assert response.status_code == 201


def test_viewer_cannot_create_jobs(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(URL, {"kind": "selftest"}, format="json")

    assert response.status_code == 403
    assert not Job.objects.exists()


def test_create_of_a_kind_without_a_runner_is_a_400_that_says_so(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(runners.RUNNERS, JobKind.FINE_TUNE.value, raising=False)

    response = client_as(Role.OPERATOR).post(URL, {"kind": "fine_tune"}, format="json")

    assert response.status_code == 400
    assert "no runner for kind fine_tune yet" in response.json()["fields"]["kind"][0]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "teleport"}, "kind"),
        ({}, "kind"),
        ({"kind": "selftest", "priority": 101}, "priority"),
        ({"kind": "selftest", "priority": "high"}, "priority"),
        ({"kind": "selftest", "queue": "not a queue"}, "queue"),
        ({"kind": "selftest", "params": {"checks": ["disk"]}}, "params"),
        ({"kind": "selftest", "params": [1, 2]}, "params"),
        ({"kind": "selftest", "device": 999_999}, "device"),
        ({"kind": "selftest", "wait_for_room": "maybe"}, "wait_for_room"),
        ({"kind": "selftest", "max_attempts": 0}, "max_attempts"),
    ],
)
def test_create_names_the_bad_field(client_as: Client, payload: dict[str, Any], field: str) -> None:
    response = client_as(Role.OPERATOR).post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_create_on_a_queue_no_live_worker_consumes_is_a_400_naming_the_live_queues(client_as: Client) -> None:
    workers.beat(redis_clients.redis_client(), "celery@gpu1", ["default", "gpu.gpu1.0"], time.time())

    response = client_as(Role.OPERATOR).post(
        URL, {"kind": "selftest", "queue": "nobody.listens"}, format="json"
    )

    assert response.status_code == 400
    [message] = response.json()["fields"]["queue"]
    assert "'nobody.listens'" in message
    assert "'gpu.gpu1.0'" in message
    assert not Job.objects.exists()


def test_create_on_a_queue_a_live_worker_consumes_is_a_201(client_as: Client) -> None:
    workers.beat(redis_clients.redis_client(), "celery@gpu1", ["gpu.gpu1.0"], time.time())

    response = client_as(Role.OPERATOR).post(URL, {"kind": "selftest", "queue": "gpu.gpu1.0"}, format="json")

    assert response.status_code == 201
    assert response.json()["queue"] == "gpu.gpu1.0"


def test_create_with_malformed_json_is_a_400(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(URL, "{not json", content_type="application/json")

    assert response.status_code == 400


def test_operator_cancels_a_queued_job(client_as: Client) -> None:
    job = JobFactory()

    response = client_as(Role.OPERATOR).post(detail(job.pk, "cancel/"))

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"


def test_cancel_of_a_finished_job_is_a_409(client_as: Client) -> None:
    job = JobFactory(state=JobState.SUCCEEDED)

    response = client_as(Role.OPERATOR).post(detail(job.pk, "cancel/"))

    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"


def test_viewer_cannot_cancel_a_job(client_as: Client) -> None:
    job = JobFactory()

    response = client_as(Role.VIEWER).post(detail(job.pk, "cancel/"))

    assert response.status_code == 403
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_cancel_of_an_unknown_job_is_404(client_as: Client) -> None:
    assert client_as(Role.OPERATOR).post(detail(999_999, "cancel/")).status_code == 404


def test_events_lists_the_jobs_log_oldest_first(client_as: Client) -> None:
    job = JobFactory()
    first = JobEventFactory(job=job, message="first")
    JobEventFactory(job=job, message="second", level="warning")
    JobEventFactory(message="another job's line")

    response = client_as(Role.VIEWER).get(detail(job.pk, "events/"))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["message"], r["level"]) for r in rows] == [("first", "info"), ("second", "warning")]
    assert rows[0]["id"] == first.pk


def test_events_of_an_unknown_job_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(detail(999_999, "events/")).status_code == 404


def test_jobs_cannot_be_deleted_through_the_api(client_as: Client) -> None:
    job = JobFactory()

    assert client_as(Role.ADMIN).delete(detail(job.pk)).status_code == 405
