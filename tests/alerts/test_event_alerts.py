"""Event alerts from the real services, committed as they commit: a job that fails on a corrupt
dataset, a release rolled back by its operator, a node swept offline with what it held, and a
placement's circuit breaker opened in the session's Redis."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.alerts import raising
from apps.alerts.domain.events import EventKind
from apps.alerts.models import Alert
from apps.core.redis_clients import redis_client
from apps.deployments.rollout import release_promote, release_rollback
from apps.fleet import registration
from apps.jobs import execution
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Dataset, Job
from apps.models import demo
from apps.models.domain.formats import ModelFormat
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass as ServingError
from apps.serving.domain.states import PlacementState
from apps.serving.resilience import Breakers
from tests.alerts.factories import AlertRuleFactory
from tests.deployments.test_actions import canary_under_way
from tests.fleet.factories import DeviceFactory, NodeFactory
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BREAKER = BreakerConfig(failure_threshold=2, open_s=30.0)


def event_rule(event: EventKind, name: str, **fields: Any) -> Any:
    return AlertRuleFactory(
        name=name, kind="event", event=event.value, metric="", threshold=None, for_seconds=0, **fields
    )


def test_a_job_that_fails_on_a_corrupt_dataset_raises_job_failed(demo_models: Path, tmp_path: Path) -> None:
    event_rule(
        EventKind.JOB_FAILED, "JobFailed", summary="Job {{ labels.job }} failed: {{ labels.error_class }}"
    )
    lm = ModelVersionFactory(path=str(demo_models / demo.BASE), format=ModelFormat.HF, kind="causal-lm")
    rows = [{"prompt": "The cat", "completion": " sat on the mat."}] * 4
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "this is not json\n")
    dataset = Dataset.objects.create(
        name="rows",
        root=str(tmp_path),
        path="rows.jsonl",
        format="jsonl",
        shape="prompt_completion",
        rows=len(rows),
        state="valid",
        sha256="ab" * 32,
        eval_share=0.25,
        split_seed=3,
    )
    job = JobFactory(
        kind=JobKind.EVALUATE,
        model_version=lm,
        params={"version": lm.pk, "dataset": dataset.pk, "split": "all"},
        task_id="t1",
    )

    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")

    job.refresh_from_db()
    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.BAD_DATA)
    alert = Alert.objects.get()
    assert alert.state == "firing"
    assert alert.labels == {
        "alertname": "JobFailed",
        "severity": "warning",
        "event": "job_failed",
        "job": str(job.pk),
        "kind": "evaluate",
        "queue": job.queue,
        "error_class": "bad_data",
        "model": lm.model.name,
        "version": str(lm.number),
    }
    assert alert.annotations["summary"] == f"Job {job.pk} failed: bad_data"
    assert "not JSON" in alert.annotations["error"]


def test_a_job_that_succeeds_raises_nothing() -> None:
    event_rule(EventKind.JOB_FAILED, "JobFailed")
    job = JobFactory(kind=JobKind.SELFTEST)

    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")

    assert Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED
    assert not Alert.objects.exists()


def test_a_release_rolled_back_raises_release_rolled_back(dispatched: list, operator: Any) -> None:
    event_rule(EventKind.RELEASE_ROLLED_BACK, "ReleaseRolledBack", severity="critical")
    deployment, stable, canary = canary_under_way(abort_grace_s=30)
    release_promote(release=canary, by=operator)
    assert not Alert.objects.exists()

    release_rollback(release=canary, by=operator, reason="answers got worse")

    alert = Alert.objects.get()
    version = canary.model_version
    assert alert.labels == {
        "alertname": "ReleaseRolledBack",
        "severity": "critical",
        "event": "release_rolled_back",
        "deployment": deployment.name,
        "release": str(canary.pk),
        "model": version.model.name,
        "version": str(version.number),
    }
    assert (alert.state, alert.annotations["reason"]) == ("firing", "answers got worse")


def test_a_node_swept_offline_raises_node_lost_and_placement_lost() -> None:
    event_rule(EventKind.NODE_LOST, "NodeLost")
    event_rule(EventKind.PLACEMENT_LOST, "PlacementLost")
    now = timezone.now()
    node = NodeFactory(name="box-1", last_heartbeat_at=now - timedelta(seconds=61))
    placement = PlacementFactory(
        device=DeviceFactory(node=node, kind="gpu", index=1), state=PlacementState.LOADED
    )

    assert registration.nodes_mark_offline(now=now) == ["box-1"]

    node_alert = Alert.objects.get(rule__name="NodeLost")
    assert node_alert.labels == {
        "alertname": "NodeLost",
        "severity": "warning",
        "event": "node_lost",
        "node": "box-1",
    }
    assert "no heartbeat from node box-1" in node_alert.annotations["reason"]
    lost = Alert.objects.get(rule__name="PlacementLost")
    assert lost.series_labels == {
        "event": "placement_lost",
        "placement": str(placement.pk),
        "model": placement.version.model.name,
        "version": str(placement.version.number),
        "node": "box-1",
        "device": "gpu1",
    }


def _open(breakers: Breakers, placement_id: int, now: float) -> None:
    for _ in range(BREAKER.failure_threshold):
        breakers.record(
            placement_id, BREAKER, now=now, error_class=ServingError.TIMEOUT, error="no answer in 10 s"
        )


def test_breakers_check_raises_once_per_opening() -> None:
    event_rule(EventKind.BREAKER_OPENED, "BreakerOpened")
    placement = PlacementFactory(state=PlacementState.LOADED)
    breakers = Breakers(redis_client())
    now = timezone.now()
    t0 = now.timestamp()

    assert raising.breakers_check(now=now) == 0  # first sight, closed: its count is only recorded
    _open(breakers, placement.pk, t0)
    assert raising.breakers_check(now=now) == 1
    assert raising.breakers_check(now=now) == 0  # still open: the same opening

    breakers.admit(placement.pk, BREAKER, now=t0 + 31)  # the probe goes through, and fails
    breakers.record(placement.pk, BREAKER, now=t0 + 31, error_class=ServingError.TIMEOUT, error="no answer")
    assert raising.breakers_check(now=now + timedelta(seconds=31)) == 1

    alert = Alert.objects.get()
    assert (alert.occurrences, alert.value, alert.labels["placement"]) == (2, 2.0, str(placement.pk))
    assert alert.annotations["error"].endswith("no answer")


def test_a_breaker_open_when_first_seen_raises_and_one_that_closed_again_does_not() -> None:
    event_rule(EventKind.BREAKER_OPENED, "BreakerOpened")
    open_now, closed_again = PlacementFactory.create_batch(2, state=PlacementState.LOADED)
    breakers = Breakers(redis_client())
    t0 = timezone.now().timestamp()
    _open(breakers, open_now.pk, t0)
    _open(breakers, closed_again.pk, t0 - 60)
    breakers.admit(closed_again.pk, BREAKER, now=t0)
    breakers.record(closed_again.pk, BREAKER, now=t0, error_class=None)

    assert raising.breakers_check(now=timezone.now()) == 1

    assert [a.labels["placement"] for a in Alert.objects.all()] == [str(open_now.pk)]
