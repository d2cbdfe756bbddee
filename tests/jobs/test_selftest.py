"""The self-test runner, in-process, against the session's real Redis and channel layer."""

from __future__ import annotations

import pynvml
import pytest
from django.test import override_settings

from apps.jobs import execution
from apps.jobs.domain.kinds import SELFTEST_CHECKS, ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.jobs.selftest import CHECKS
from tests.jobs.factories import JobFactory
from tests.procs import free_port

pytestmark = pytest.mark.django_db


def run(job: Job) -> Job:
    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")
    job.refresh_from_db()
    return job


def checks_of(job: Job) -> dict[str, dict]:
    return {check["name"]: check for check in job.result["checks"]}


def test_selftest_has_a_function_for_every_check_it_offers() -> None:
    assert set(CHECKS) == set(SELFTEST_CHECKS)


def test_selftest_runs_every_check_in_order_and_all_pass() -> None:
    job = run(JobFactory(kind=JobKind.SELFTEST))

    assert [(c["name"], c["ok"]) for c in job.result["checks"]] == [(name, True) for name in SELFTEST_CHECKS]


def test_selftest_logs_each_check_as_an_event_with_its_evidence() -> None:
    job = run(JobFactory(kind=JobKind.SELFTEST))

    logged = {e.data["name"]: e for e in job.events.exclude(data={})}
    assert set(logged) == set(SELFTEST_CHECKS)
    assert logged["redis"].message.startswith("redis: Redis ")
    assert logged["redis"].data["evidence"]["version"]


def test_selftest_sees_its_own_job_in_the_database() -> None:
    job = run(JobFactory(kind=JobKind.SELFTEST))

    assert checks_of(job)["database"]["summary"] == f"sqlite answers and holds job #{job.pk}"


def test_selftest_round_trips_a_message_through_the_channel_layer() -> None:
    job = run(JobFactory(kind=JobKind.SELFTEST))

    evidence = checks_of(job)["channel_layer"]["evidence"]
    assert evidence["backend"] == "RedisChannelLayer"
    assert evidence["round_trip_ms"] > 0


def test_selftest_reports_the_workers_cpus_and_ram() -> None:
    evidence = checks_of(run(JobFactory(kind=JobKind.SELFTEST)))["device"]["evidence"]

    assert evidence["cpu_count"] >= 1
    assert evidence["ram_total_bytes"] > 0


def test_selftest_says_why_there_is_no_nvidia_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_library() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)

    with override_settings(MOC_DEVICES="auto"):
        device = checks_of(run(JobFactory(kind=JobKind.SELFTEST)))["device"]

    assert device["ok"] is True
    assert "NVML unavailable (NVML Shared Library Not Found); offering the CPU" in device["summary"]
    assert device["evidence"]["devices"]["backend"] == "cpu"
    assert device["evidence"]["devices"]["driver"] is None


def test_selftest_lists_the_devices_the_node_offers_and_says_which_are_simulated() -> None:
    with override_settings(MOC_DEVICES="sim:2x24GiB"):
        device = checks_of(run(JobFactory(kind=JobKind.SELFTEST)))["device"]

    # What follows says whether the host's memory caps them, which depends on the machine.
    assert "; MOC_DEVICES=sim:2x24GiB: 2 simulated GPUs (2x24 GiB)" in device["summary"]
    listed = device["evidence"]["devices"]["devices"]
    assert [(d["index"], d["simulated"], d["memory_total_bytes"]) for d in listed] == [
        (0, True, 24 * 1024**3),
        (1, True, 24 * 1024**3),
    ]


def test_selftest_fails_when_redis_cannot_be_reached_and_still_reports_the_rest() -> None:
    job = JobFactory(kind=JobKind.SELFTEST)

    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        job = run(job)

    checks = checks_of(job)
    assert (job.state, job.error_class, job.error) == (
        JobState.FAILED,
        ErrorClass.CHECK_FAILED,
        "Failed checks: redis.",
    )
    assert checks["redis"]["summary"].startswith("ConnectionError")
    assert checks["database"]["ok"] is True


def test_selftest_runs_only_the_checks_asked_for() -> None:
    job = run(JobFactory(kind=JobKind.SELFTEST, params={"checks": ["device", "database"]}))

    assert [c["name"] for c in job.result["checks"]] == ["device", "database"]
