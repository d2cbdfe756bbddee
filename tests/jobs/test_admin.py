from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.jobs.domain.states import JobState
from tests.jobs.factories import JobEventFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["job", "jobevent"])
def test_changelist_loads_for_an_admin_with_a_search(admin_client_: Client, model: str) -> None:
    JobEventFactory(message="redis answers", job=JobFactory(message="redis"))

    response = admin_client_.get(reverse(f"admin:jobs_{model}_changelist"), {"q": "redis"})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


def test_job_changelist_filters_by_state_kind_and_queue(admin_client_: Client) -> None:
    wanted = JobFactory(state=JobState.FAILED, queue="gpu.n1.0")
    JobFactory(state=JobState.FAILED)
    JobFactory(queue="gpu.n1.0")

    response = admin_client_.get(
        reverse("admin:jobs_job_changelist"), {"state": "failed", "kind": "selftest", "queue": "gpu.n1.0"}
    )

    assert [job.pk for job in response.context["cl"].result_list] == [wanted.pk]


def test_job_change_page_shows_its_events_inline(admin_client_: Client) -> None:
    event = JobEventFactory(message="checking the database")

    response = admin_client_.get(reverse("admin:jobs_job_change", args=[event.job_id]))

    assert response.status_code == 200
    assert "checking the database" in response.content.decode()


def test_jobs_cannot_be_added_in_the_admin(admin_client_: Client) -> None:
    assert admin_client_.get(reverse("admin:jobs_job_add")).status_code == 403
