"""The jobs API for the queue: creating device kinds, refusals, cancel with save, retry, and the
metric series and checkpoints."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from apps.jobs import services
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job, JobCheckpoint, JobMetric
from tests.fleet.factories import GIB
from tests.jobs.factories import JobFactory
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm

pytestmark = pytest.mark.django_db

URL = "/api/v1/jobs/"
Client = Callable[[Role | None], APIClient]


def test_an_operator_queues_a_fine_tune_that_waits_for_the_dispatcher(client_as: Client) -> None:
    gpu(24)
    version, data = lm(), dataset()

    response = client_as(Role.OPERATOR).post(
        URL, {"kind": "fine_tune", "params": fine_tune(version, data), "priority": 70}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["state"], body["priority"], body["model_version"]["id"]) == ("queued", 70, version.pk)
    assert (body["dataset"]["id"], body["dataset"]["name"]) == (data.pk, data.name)
    assert (body["percent"], body["retry_of"], body["wait_for_room"]) == (0, None, False)


def test_a_bad_parameter_is_a_400_naming_it_under_params(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(
        URL, {"kind": "fine_tune", "params": fine_tune(lm(), dataset(), seq_len=4096)}, format="json"
    )

    assert response.status_code == 400
    [line] = response.json()["fields"]["params"]
    assert line.startswith("seq_len: 4,096 tokens is more than")


def test_a_job_no_device_can_take_is_a_409_with_the_schedulers_reason(client_as: Client) -> None:
    gpu(24)

    response = client_as(Role.OPERATOR).post(
        URL,
        {"kind": "fine_tune", "params": fine_tune(lm(), dataset(), memory_bytes=40 * GIB)},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"] == "placement_refused"
    assert "needs 40.0 GiB" in response.json()["detail"]
    assert not Job.objects.exists()


def test_an_operator_may_not_queue_a_conversion(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(
        URL, {"kind": "convert", "params": {"version": lm(format="pytorch").pk}}, format="json"
    )

    assert response.status_code == 403
    assert not Job.objects.exists()


def test_a_second_cancel_asking_for_a_save_is_heard_and_audited(client_as: Client) -> None:
    job = JobFactory(kind=JobKind.FINE_TUNE, state=JobState.RUNNING, task_id="t1")
    client = client_as(Role.OPERATOR)
    assert client.post(f"{URL}{job.pk}/cancel/", {}, format="json").json()["stop_save"] is False

    response = client.post(f"{URL}{job.pk}/cancel/", {"save": True}, format="json")

    assert (response.json()["state"], response.json()["stop_save"]) == ("cancelling", True)
    assert services.job_stop_asked(job_id=job.pk, task_id="t1") == ("cancel", True)
    last = AuditEvent.objects.filter(action="cancel", object_id=str(job.pk)).latest("pk")
    assert last.changes == {"save": True}


def test_cancel_with_save_asks_a_running_fine_tune_to_checkpoint(client_as: Client) -> None:
    job = JobFactory(kind=JobKind.FINE_TUNE, state=JobState.RUNNING, task_id="t1")

    response = client_as(Role.OPERATOR).post(f"{URL}{job.pk}/cancel/", {"save": True}, format="json")

    assert response.status_code == 200
    assert (response.json()["state"], response.json()["stop_save"]) == ("cancelling", True)


def test_retry_answers_201_with_the_new_job(client_as: Client) -> None:
    failed = JobFactory(state=JobState.FAILED, priority=80)

    response = client_as(Role.OPERATOR).post(f"{URL}{failed.pk}/retry/")

    assert response.status_code == 201
    assert (response.json()["retry_of"], response.json()["priority"]) == (failed.pk, 80)


def test_retry_of_a_job_still_running_is_a_409(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    assert client_as(Role.OPERATOR).post(f"{URL}{job.pk}/retry/").status_code == 409


def test_a_viewer_cannot_retry(client_as: Client) -> None:
    job = JobFactory(state=JobState.FAILED)

    assert client_as(Role.VIEWER).post(f"{URL}{job.pk}/retry/").status_code == 403


def test_metrics_are_the_series_by_name_in_step_order(client_as: Client) -> None:
    job = JobFactory()
    for name, step, value in [("train_loss", 2, 2.5), ("train_loss", 1, 3.0), ("eval_loss", 2, 2.9)]:
        JobMetric.objects.create(job=job, name=name, step=step, value=value)

    response = client_as(Role.VIEWER).get(f"{URL}{job.pk}/metrics/")

    assert response.status_code == 200
    assert response.json() == {"eval_loss": [[2, 2.9]], "train_loss": [[1, 3.0], [2, 2.5]]}


def test_checkpoints_are_listed_newest_first(client_as: Client) -> None:
    job = JobFactory()
    for step in (50, 100):
        JobCheckpoint.objects.create(job=job, step=step, path=f"/ck/step-{step}", reason="interval")

    response = client_as(Role.VIEWER).get(f"{URL}{job.pk}/checkpoints/")

    assert [row["step"] for row in response.json()] == [100, 50]


def test_jobs_filter_by_dataset(client_as: Client) -> None:
    data = dataset()
    job = JobFactory(dataset=data)
    JobFactory()

    response = client_as(Role.VIEWER).get(URL, {"dataset": data.pk})

    assert [row["id"] for row in response.json()["results"]] == [job.pk]
