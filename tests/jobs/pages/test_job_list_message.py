"""The jobs list shows each job's message (review 15b item 11), in a cell jobs.js keeps live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.urls import reverse

from apps.core.domain.roles import Role
from apps.jobs.domain.states import JobState
from tests.jobs.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_the_jobs_list_shows_a_waiting_jobs_message_cut_to_forty_characters(
    client_as: Callable[[Role | None], Any],
) -> None:
    message = "Waiting for room: no device has 12.0 GiB free now"
    job = JobFactory(state=JobState.QUEUED, message=message)

    html = client_as(Role.VIEWER).get(reverse("jobs:list")).content.decode()

    assert f'<td class="muted" data-job-message="{job.pk}" title="{message}">{message[:39]}…</td>' in html
