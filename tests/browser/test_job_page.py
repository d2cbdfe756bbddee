"""A job's page in a real browser: the progress bar moves, without a reload, when the running job's
runner reports a step (Report -> apps.jobs.live -> Redis -> uvicorn's websocket -> static/js/job.js)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from apps.core.domain.roles import Role
from apps.jobs.domain.states import JobState
from apps.jobs.reporting import Report
from tests.browser.test_operator_pages import log_in
from tests.jobs.factories import JobFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_progress_bar_moves_when_the_running_job_reports(
    page: Page, asgi_server: str, make_user: Callable[..., object]
) -> None:
    job = JobFactory(kind="fine_tune", state=JobState.RUNNING, task_id=uuid.uuid4().hex, worker="w1")
    log_in(page, asgi_server, make_user, Role.VIEWER, job.get_absolute_url())
    expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
    expect(page.locator("#job-percent")).to_have_text("0%")

    report = Report(job, job.task_id)
    report.step(step=3, total=4, tokens=256, metrics={"train_loss": 2.0}, message="training")

    expect(page.locator("#job-percent")).to_have_text("75%", timeout=10_000)
    expect(page.locator("#job-steps")).to_have_text("· step 3 of 4")
    assert page.locator("#job-progress").evaluate("bar => bar.value") == 0.75
    expect(page.locator("#job-loss-chart .main-svg").first).to_be_attached(timeout=10_000)
    assert page.evaluate("window.loadedOnce") is True  # no reload
