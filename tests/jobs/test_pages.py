from __future__ import annotations

from collections.abc import Callable

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from tests.jobs.factories import JobEventFactory, JobFactory

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]


def page(client: APIClient, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def test_jobs_list_shows_jobs_with_state_badges(client_as: Client) -> None:
    JobFactory(state=JobState.SUCCEEDED)
    JobFactory(state=JobState.FAILED, error_class=ErrorClass.WORKER_LOST)

    html = page(client_as(Role.VIEWER), reverse("jobs:list"))

    assert '<span class="badge ok">Succeeded</span>' in html
    assert '<span class="badge bad">Failed</span>' in html
    assert "worker_lost" in html


def test_jobs_list_sends_anonymous_visitors_to_log_in(client_as: Client) -> None:
    response = client_as(None).get(reverse("jobs:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_jobs_list_filters_by_state(client_as: Client) -> None:
    JobFactory(state=JobState.FAILED, queue="q-failed")
    JobFactory(state=JobState.QUEUED, queue="q-queued")

    html = page(client_as(Role.VIEWER), reverse("jobs:list"), state="failed")

    assert "q-failed" in html
    assert "q-queued" not in html


def test_operator_sees_the_run_selftest_button(client_as: Client) -> None:
    assert "Run self-test" in page(client_as(Role.OPERATOR), reverse("jobs:list"))


def test_viewer_does_not_see_the_run_selftest_button(client_as: Client) -> None:
    assert "Run self-test" not in page(client_as(Role.VIEWER), reverse("jobs:list"))


def test_empty_jobs_list_tells_an_operator_to_run_a_selftest(client_as: Client) -> None:
    assert "Press “Run self-test”" in page(client_as(Role.OPERATOR), reverse("jobs:list"))


def test_run_selftest_queues_a_job_and_opens_it(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(
        reverse("jobs:selftest"), {"queue": "default"}, format="multipart"
    )

    job = Job.objects.get()
    assert (job.kind, job.queue, job.state) == (JobKind.SELFTEST, "default", JobState.QUEUED)
    assert response.status_code == 302
    assert response["Location"] == job.get_absolute_url()


def test_run_selftest_is_forbidden_to_a_viewer(client_as: Client) -> None:
    response = client_as(Role.VIEWER).post(reverse("jobs:selftest"), {"queue": "default"}, format="multipart")

    assert response.status_code == 403
    assert not Job.objects.exists()


def test_run_selftest_refuses_a_queue_no_worker_consumes(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(
        reverse("jobs:selftest"), {"queue": "gpu.nowhere.9"}, format="multipart"
    )

    assert response.status_code == 302
    assert not Job.objects.exists()


def test_job_detail_shows_the_log_and_the_result(client_as: Client) -> None:
    job = JobFactory(
        state=JobState.SUCCEEDED,
        result={"ok": True, "checks": [{"name": "redis", "ok": True, "duration_ms": 1.5, "summary": "PONG"}]},
    )
    JobEventFactory(job=job, message="redis: Redis 7 answers PING")

    html = page(client_as(Role.VIEWER), job.get_absolute_url())

    assert "redis: Redis 7 answers PING" in html
    assert '<span class="badge ok">pass</span>' in html


def test_job_detail_of_a_running_job_polls_for_updates(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    assert 'hx-trigger="every 2s"' in page(client_as(Role.VIEWER), job.get_absolute_url())


def test_job_detail_of_a_finished_job_stops_polling(client_as: Client) -> None:
    job = JobFactory(state=JobState.SUCCEEDED)

    assert "hx-trigger" not in page(client_as(Role.VIEWER), job.get_absolute_url())


def test_job_detail_polled_by_htmx_returns_only_the_live_part(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    response = client_as(Role.VIEWER).get(job.get_absolute_url(), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert '<div id="job-live"' in html
    assert "<html" not in html


def test_job_detail_poll_of_a_finished_job_takes_its_cancel_button_away(client_as: Client) -> None:
    job = JobFactory(state=JobState.SUCCEEDED)

    response = client_as(Role.OPERATOR).get(job.get_absolute_url(), headers={"HX-Request": "true"})

    html = response.content.decode()
    # The page's actions are swapped out of band, by id, with the live part.
    assert 'id="job-actions" hx-swap-oob="true"' in html
    assert ">Cancel</button>" not in html


def test_job_detail_poll_of_a_running_job_keeps_its_cancel_button(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    response = client_as(Role.OPERATOR).get(job.get_absolute_url(), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert 'id="job-actions" hx-swap-oob="true"' in html
    assert ">Cancel</button>" in html


def test_job_detail_of_an_unknown_job_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(reverse("jobs:detail", args=[999_999])).status_code == 404


def test_operator_sees_cancel_on_an_unfinished_job(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    assert ">Cancel</button>" in page(client_as(Role.OPERATOR), job.get_absolute_url())


def test_viewer_does_not_see_cancel(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    assert ">Cancel</button>" not in page(client_as(Role.VIEWER), job.get_absolute_url())


def test_cancel_from_the_page_asks_a_running_job_to_stop(client_as: Client) -> None:
    job = JobFactory(state=JobState.RUNNING)

    response = client_as(Role.OPERATOR).post(reverse("jobs:cancel", args=[job.pk]))

    job.refresh_from_db()
    assert response.status_code == 302
    assert job.state == JobState.CANCELLING


def test_cancel_from_the_page_of_a_finished_job_explains_instead_of_failing(client_as: Client) -> None:
    job = JobFactory(state=JobState.FAILED)

    response = client_as(Role.OPERATOR).post(reverse("jobs:cancel", args=[job.pk]), follow=True)

    assert "is already failed; there is nothing to cancel" in response.content.decode()


def test_cancel_from_the_page_is_forbidden_to_a_viewer(client_as: Client) -> None:
    job = JobFactory()

    assert client_as(Role.VIEWER).post(reverse("jobs:cancel", args=[job.pk])).status_code == 403


def test_job_detail_shows_only_the_latest_log_lines_of_a_long_log(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("apps.jobs.views.LOG_TAIL", 2)
    job = JobFactory()
    for n in range(3):
        JobEventFactory(job=job, message=f"line number {n}")

    html = page(client_as(Role.VIEWER), job.get_absolute_url())

    assert "line number 0" not in html
    assert "line number 2" in html
    assert "The last 2 of 3 lines" in html
