"""The job page (progress, checkpoints, lineage, buttons), its snapshot, and the forms that queue jobs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.jobs import selectors
from apps.jobs.domain.states import JobState
from apps.jobs.forms import BenchmarkForm, EvaluateForm, FineTuneForm, parse_golden
from apps.jobs.models import Job, JobCheckpoint, JobMetric
from tests.fleet.factories import DeviceFactory
from tests.jobs.factories import JobEventFactory, JobFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db
ClientAs = Callable[[Role | None], APIClient]


def _fine_tune(**fields: object) -> Job:
    job = JobFactory(
        kind="fine_tune", state=JobState.RUNNING, step=30, total_steps=120, progress=0.25, **fields
    )
    for step, loss in ((10, 3.0), (20, 2.5), (30, 2.0)):
        JobMetric.objects.create(job=job, name="train_loss", step=step, value=loss)
    JobMetric.objects.create(job=job, name="eval_loss", step=20, value=2.7)
    JobCheckpoint.objects.create(
        job=job, step=20, path="/ck/job-x/step-00000020", size_bytes=3 * 2**20, reason="interval"
    )
    return job


def test_job_series_are_by_name_then_step() -> None:
    job = _fine_tune()
    JobMetric.objects.create(job=job, name="train_loss", step=5, value=3.5)

    series = selectors.job_series(job=job)

    assert series == {
        "eval_loss": [(20, 2.7)],
        "train_loss": [(5, 3.5), (10, 3.0), (20, 2.5), (30, 2.0)],
    }
    assert [c.step for c in selectors.job_checkpoints(job=job)] == [20]


def test_a_running_fine_tunes_page_shows_progress_checkpoints_lineage_and_its_buttons(
    client_as: ClientAs,
) -> None:
    earlier = JobFactory(kind="fine_tune", state=JobState.FAILED)
    job = _fine_tune(retry_of=earlier, eta_s=95.0, tokens_per_s=1234.0, memory_bytes=512 * 2**20)

    html = client_as(Role.OPERATOR).get(job.get_absolute_url()).content.decode()

    assert 'id="job-percent">25%<' in html
    assert "step 30 of 120" in html
    assert "1 min 35 s left" in html
    assert "1234 tokens/s" in html
    assert "512.0\xa0MiB" in html
    assert "step-00000020" in html
    assert "3.0\xa0MiB" in html
    assert f'Retry of <a href="{earlier.get_absolute_url()}">#{earlier.pk}</a>' in html
    assert "Cancel and save a checkpoint" in html
    assert 'id="job-retry"' not in html
    assert f'"socket": "/ws/jobs/{job.pk}/"' in html


def test_a_viewer_sees_no_buttons_and_a_failed_job_offers_retry_to_an_operator(client_as: ClientAs) -> None:
    job = JobFactory(kind="fine_tune", state=JobState.FAILED)

    viewer = client_as(Role.VIEWER).get(job.get_absolute_url()).content.decode()
    operator = client_as(Role.OPERATOR).get(job.get_absolute_url()).content.decode()

    assert 'id="job-retry"' not in viewer
    assert 'id="job-cancel"' not in viewer
    assert 'id="job-retry"' in operator
    assert 'id="job-cancel"' not in operator


def test_the_snapshot_has_every_series_point_and_the_log_tail(client_as: ClientAs) -> None:
    job = _fine_tune()
    JobEventFactory(job=job, message="step 30")

    data = client_as(Role.VIEWER).get(reverse("jobs:live", args=[job.pk])).json()

    assert data["percent"] == 25
    assert data["metrics"]["after"] == 0
    assert sorted((p[1], p[2]) for p in data["metrics"]["items"]) == [
        ("eval_loss", 20),
        ("train_loss", 10),
        ("train_loss", 20),
        ("train_loss", 30),
    ]
    assert [line[-1] for line in data["log"]["items"]] == ["step 30"]
    assert data["checkpoints"][0][0] == 20


def test_the_snapshot_needs_a_login(client_as: ClientAs) -> None:
    job = JobFactory()

    assert client_as(None).get(reverse("jobs:live", args=[job.pk])).status_code == 302


def test_the_list_shows_progress_inline_and_the_new_job_links_by_role(client_as: ClientAs) -> None:
    JobFactory(kind="fine_tune", state=JobState.RUNNING, progress=0.5, eta_s=30.0)

    operator = client_as(Role.OPERATOR).get(reverse("jobs:list")).content.decode()
    admin = client_as(Role.ADMIN).get(reverse("jobs:list")).content.decode()
    viewer = client_as(Role.VIEWER).get(reverse("jobs:list")).content.decode()

    assert '<span class="percent">50%</span>' in operator
    assert "30 s left" in operator
    assert 'id="new-fine_tune"' in operator
    assert 'id="new-convert"' not in operator
    assert 'id="new-convert"' in admin
    assert 'id="new-fine_tune"' not in viewer


def test_convert_is_for_admins_only(client_as: ClientAs) -> None:
    assert client_as(Role.OPERATOR).get(reverse("jobs:new", args=["convert"])).status_code == 403
    assert client_as(Role.ADMIN).get(reverse("jobs:new", args=["convert"])).status_code == 200


def test_a_form_error_is_shown_on_its_field_and_queues_nothing(client_as: ClientAs) -> None:
    version = ModelVersionFactory()

    response = client_as(Role.OPERATOR).post(
        reverse("jobs:new", args=["benchmark"]),
        {
            "benchmark-version": version.pk,
            "benchmark-batch_sizes": "1, x",
            "benchmark-prompt_lengths": "16",
            "benchmark-priority": 50,
        },
        format="multipart",
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="error-batch_sizes"' in html
    assert "not x" in html
    assert not Job.objects.exists()


def test_golden_pairs_name_the_line_that_is_not_a_pair() -> None:
    assert parse_golden("2+2 => 4\n\ncapital of France => Paris") == [
        ["2+2", "4"],
        ["capital of France", "Paris"],
    ]
    with pytest.raises(ValidationError, match="line 2"):
        parse_golden("a => b\nno arrow here")


def test_forms_shape_the_kinds_parameters() -> None:
    version = ModelVersionFactory()
    fine_tune = FineTuneForm(
        {
            "fine_tune-base_version": version.pk,
            "fine_tune-method": "full",
            "fine_tune-learning_rate": "0.001",
            "fine_tune-max_steps": "20",
            "fine_tune-epochs": "1",
            "fine_tune-batch_size": "4",
            "fine_tune-grad_accum": "2",
            "fine_tune-seq_len": "64",
            "fine_tune-eval_interval": "5",
            "fine_tune-checkpoint_interval": "10",
            "fine_tune-lora_rank": "8",
            "fine_tune-seed": "3",
            "fine_tune-priority": "60",
            "fine_tune-wait_for_room": "on",
        }
    )
    fine_tune.fields["dataset"].required = False  # no dataset table rows in this unit test
    assert fine_tune.is_valid(), fine_tune.errors
    params = fine_tune.params()
    assert params["base_version"] == version.pk
    assert params["batch_size"] == 4
    assert "lora_rank" not in params
    assert fine_tune.job_options() == {"priority": 60, "wait_for_room": True}

    evaluate = EvaluateForm(
        {"evaluate-version": version.pk, "evaluate-golden": "hi => there", "evaluate-priority": 50}
    )
    assert evaluate.is_valid(), evaluate.errors
    assert evaluate.params() == {"version": version.pk, "golden": [["hi", "there"]]}

    assert BenchmarkForm().fields["batch_sizes"].initial == "1, 4"  # the kind's defaults


def test_a_services_refusal_lands_on_the_field_it_names() -> None:
    form = FineTuneForm({})
    form.is_valid()
    form.errors.clear()

    form.add_refusal(
        ValidationError(
            {"params": ["seq_len: longer than the model's context (1024)."], "queue": ["No worker."]}
        )
    )
    form.add_refusal(ValidationError({"lora_rank": ["above the model's width (64)."]}))

    assert form.errors["seq_len"] == ["longer than the model's context (1024)."]
    assert form.errors["lora_rank"] == ["above the model's width (64)."]
    assert form.non_field_errors() == ["queue: No worker."]


def test_cancel_and_save_asks_a_running_fine_tune_for_a_checkpoint(client_as: ClientAs) -> None:
    job = JobFactory(kind="fine_tune", state=JobState.RUNNING, task_id="t1")

    response = client_as(Role.OPERATOR).post(
        reverse("jobs:cancel", args=[job.pk]), {"save": "1"}, format="multipart"
    )

    job.refresh_from_db()
    assert response.status_code == 302
    assert (job.state, job.stop_save) == (JobState.CANCELLING, True)


def test_retry_queues_a_new_job_that_names_the_one_it_retries(client_as: ClientAs) -> None:
    job = JobFactory(kind="selftest", state=JobState.FAILED)

    response = client_as(Role.OPERATOR).post(reverse("jobs:retry", args=[job.pk]))

    retry = Job.objects.exclude(pk=job.pk).get()
    assert retry.retry_of == job
    assert response["Location"] == retry.get_absolute_url()


def test_retrying_a_running_job_is_refused_with_the_reason(client_as: ClientAs) -> None:
    job = JobFactory(kind="selftest", state=JobState.RUNNING)

    response = client_as(Role.OPERATOR).post(reverse("jobs:retry", args=[job.pk]), follow=True)

    assert "only a failed or cancelled job can be retried" in response.content.decode()
    assert Job.objects.count() == 1


def test_a_jobs_memory_on_a_simulated_device_is_labelled_an_estimate(client_as: ClientAs) -> None:
    """A simulated GPU (or a CPU) has no allocator to measure: the figure is MOC's estimate, and says so."""
    simulated = _fine_tune(memory_bytes=64 * 2**20, device=DeviceFactory(simulated=True))
    real = _fine_tune(memory_bytes=64 * 2**20, device=DeviceFactory(simulated=False, kind="gpu"))

    assert "(estimated)" in client_as(Role.VIEWER).get(simulated.get_absolute_url()).content.decode()
    page = client_as(Role.VIEWER).get(real.get_absolute_url()).content.decode()
    assert "(estimated)" not in page
    assert "(peak allocated)" in page
