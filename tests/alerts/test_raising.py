"""Event alerts: raised at once on the rules of their kind, bumped while open, resolved after the
keep-firing time; raised only once the sender's transaction committed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from apps.alerts import raising, signals
from apps.alerts.domain.events import EventKind
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert
from apps.core.transitions import transition
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.states import VERIFICATION, VerificationState
from apps.jobs.domain.states import JobState
from apps.jobs.services import lifecycle
from tests.alerts.factories import AlertRuleFactory, SilenceFactory
from tests.deployments.factories import CheckResultFactory, VerificationRunFactory
from tests.jobs.factories import JobFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
FAILED_JOB = {
    "job": "7",
    "kind": "evaluate",
    "queue": "gpu",
    "error_class": "bad_data",
    "model": "",
    "version": "",
}


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def event_rule(**fields: Any) -> Any:
    return AlertRuleFactory(
        **{
            "name": "JobFailed",
            "kind": "event",
            "event": EventKind.JOB_FAILED.value,
            "metric": "",
            "threshold": None,
            "for_seconds": 0,
            "severity": "critical",
            **fields,
        }
    )


@pytest.fixture
def changes() -> Iterator[list[tuple[int, str, int]]]:
    """(alert id, state, occurrences) of every alert_changed sent."""
    heard: list[tuple[int, str, int]] = []

    def receiver(sender: Any, *, alert: Alert, **kwargs: Any) -> None:
        heard.append((alert.pk, alert.state, alert.occurrences))

    signals.alert_changed.connect(receiver, dispatch_uid="test-raising")
    yield heard
    signals.alert_changed.disconnect(dispatch_uid="test-raising")


def test_an_event_raises_a_firing_alert_with_its_labels_and_annotations(changes: list) -> None:
    rule = event_rule(
        summary="Job {{ labels.job }} failed ({{ labels.error_class }})",
        description="{{ labels.kind }} on {{ labels.queue }}, attempt {{ value }}",
    )

    (alert,) = raising.event_raise(
        event=EventKind.JOB_FAILED, labels=FAILED_JOB, value=2.0, now=T0, details={"error": "row 3: not JSON"}
    )

    assert alert.labels == {
        "alertname": "JobFailed",
        "severity": "critical",
        "event": "job_failed",
        "job": "7",
        "kind": "evaluate",
        "queue": "gpu",
        "error_class": "bad_data",
    }
    assert (alert.state, alert.started_at, alert.fired_at, alert.last_breach_at) == ("firing", T0, T0, T0)
    assert (alert.value, alert.fired_value, alert.occurrences) == (2.0, 2.0, 1)
    assert alert.annotations == {
        "summary": "Job 7 failed (bad_data)",
        "description": "evaluate on gpu, attempt 2",
        "error": "row 3: not JSON",
    }
    assert alert.fingerprint == raising.event_fingerprint(rule.pk, EventKind.JOB_FAILED, alert.labels)
    assert changes == [(alert.pk, "firing", 1)]


def test_labels_the_event_kind_does_not_carry_are_left_out() -> None:
    event_rule(event=EventKind.NODE_LOST.value, name="NodeLost")

    (alert,) = raising.event_raise(event=EventKind.NODE_LOST, labels={"node": "box-1", "job": "3"}, now=T0)

    assert alert.labels == {
        "alertname": "NodeLost",
        "severity": "critical",
        "event": "node_lost",
        "node": "box-1",
    }


def test_a_rule_without_a_summary_says_what_happened() -> None:
    event_rule()

    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)

    assert alert.annotations == {"summary": "A job failed"}


def test_only_rules_of_the_event_whose_matchers_match_raise() -> None:
    event_rule(name="GpuJobFailed", matchers=[{"label": "queue", "op": "=", "value": "gpu"}])
    event_rule(name="CpuJobFailed", matchers=[{"label": "queue", "op": "=", "value": "cpu"}])
    event_rule(name="NodeLost", event=EventKind.NODE_LOST.value)

    raised = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)

    assert [a.rule.name for a in raised] == ["GpuJobFailed"]
    assert Alert.objects.count() == 1


def test_a_disabled_rule_raises_nothing() -> None:
    event_rule(enabled=False)

    assert raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0) == []
    assert not Alert.objects.exists()


def test_the_same_identity_again_bumps_the_open_alert(changes: list) -> None:
    event_rule(event=EventKind.BREAKER_OPENED.value, name="BreakerOpened")
    labels = {"placement": "4", "model": "m", "version": "1", "node": "box-1", "device": "gpu0"}
    (first,) = raising.event_raise(event=EventKind.BREAKER_OPENED, labels=labels, value=1.0, now=T0)

    (again,) = raising.event_raise(event=EventKind.BREAKER_OPENED, labels=labels, value=2.0, now=at(20))

    assert again.pk == first.pk
    assert (again.occurrences, again.value, again.peak_value, again.fired_value) == (2, 2.0, 2.0, 1.0)
    assert (again.started_at, again.last_breach_at, again.state) == (T0, at(20), "firing")
    assert changes == [(first.pk, "firing", 1), (first.pk, "firing", 2)]


def test_each_failed_job_is_its_own_alert() -> None:
    event_rule()

    raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)
    raising.event_raise(event=EventKind.JOB_FAILED, labels={**FAILED_JOB, "job": "8"}, now=T0)

    assert sorted(a.labels["job"] for a in Alert.objects.all()) == ["7", "8"]


def test_an_event_alert_resolves_once_quiet_for_a_minute_at_least(changes: list) -> None:
    event_rule(keep_firing_seconds=0)
    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)

    assert raising.event_alerts_resolve(now=at(59)) == 0
    assert raising.event_alerts_resolve(now=at(60)) == 1

    alert.refresh_from_db()
    assert (alert.state, alert.resolved_at) == (AlertState.RESOLVED, at(60))
    assert changes[-1] == (alert.pk, "resolved", 1)


def test_keep_firing_counts_from_the_last_occurrence() -> None:
    event_rule(keep_firing_seconds=300)
    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)
    raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=at(200))

    assert raising.event_alerts_resolve(now=at(320)) == 0
    assert raising.event_alerts_resolve(now=at(500)) == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_the_same_identity_after_its_alert_resolved_is_a_new_alert() -> None:
    event_rule()
    (first,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)
    raising.event_alerts_resolve(now=at(60))

    (second,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=at(61))

    assert second.pk != first.pk
    assert (second.fingerprint, second.state, second.occurrences) == (first.fingerprint, "firing", 1)


def test_a_disabled_rules_open_alerts_resolve_at_once() -> None:
    rule = event_rule(keep_firing_seconds=3600)
    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)
    rule.enabled = False
    rule.save()

    assert raising.event_alerts_resolve(now=at(1)) == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_a_silence_in_force_mutes_the_new_alert_at_once() -> None:
    event_rule()
    now = dt.datetime.now(dt.UTC)
    SilenceFactory(matchers=[{"label": "queue", "op": "=", "value": "gpu"}])

    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=now)

    assert alert.silenced


def test_a_silence_that_cannot_be_matched_does_not_stop_new_alerts() -> None:
    event_rule()
    now = dt.datetime.now(dt.UTC)
    SilenceFactory(matchers=[{"label": "queue", "op": "=~", "value": "(gpu"}])  # does not compile
    SilenceFactory(matchers=[{"label": "queue", "op": "=", "value": "cpu"}])  # sound, matches another queue

    (alert,) = raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=now)

    assert (alert.state, alert.silenced) == (AlertState.FIRING, False)


# The receivers, on the real services' moves


def test_a_job_that_fails_raises_once_its_transaction_commits(
    django_capture_on_commit_callbacks: Any,
) -> None:
    event_rule()
    version = ModelVersionFactory(model__name="tiny-lm", number=3)
    job = JobFactory(kind="evaluate", queue="cpu", state=JobState.RUNNING, attempts=1, model_version=version)

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.job_fail(job=job, error_class="bad_data", error="row 3: not JSON")

    alert = Alert.objects.get()
    assert alert.labels == {
        "alertname": "JobFailed",
        "severity": "critical",
        "event": "job_failed",
        "job": str(job.pk),
        "kind": "evaluate",
        "queue": "cpu",
        "error_class": "bad_data",
        "model": "tiny-lm",
        "version": "3",
    }
    assert (alert.value, alert.annotations["error"]) == (1.0, "row 3: not JSON")


@pytest.mark.django_db(transaction=True)
def test_a_failure_that_was_rolled_back_raises_nothing(changes: list) -> None:
    event_rule()
    job = JobFactory(state=JobState.RUNNING, attempts=1)

    def fail_then_roll_back() -> None:
        with transaction.atomic():
            lifecycle.job_fail(job=job, error_class="bad_data", error="never committed")
            raise RuntimeError("the caller's transaction fails after the job did")

    with pytest.raises(RuntimeError):
        fail_then_roll_back()

    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert (Alert.objects.exists(), changes) == (False, [])


@pytest.mark.django_db(transaction=True)
def test_an_alert_that_cannot_be_raised_does_not_break_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    event_rule(summary="{{ labels.job }}")
    job = JobFactory(state=JobState.RUNNING, attempts=1)

    def refuse(**kwargs: Any) -> list[Alert]:
        raise RuntimeError("alerts are broken")

    monkeypatch.setattr("apps.alerts.receivers.event_raise", refuse)

    assert lifecycle.job_fail(job=job, error_class="bad_data", error="it failed")
    job.refresh_from_db()
    assert job.state == JobState.FAILED


def test_a_failed_verification_names_its_failed_required_checks(
    django_capture_on_commit_callbacks: Any,
) -> None:
    event_rule(name="VerificationFailed", event=EventKind.VERIFICATION_FAILED.value)
    run = VerificationRunFactory(state=VerificationState.RUNNING, release__deployment__name="chat")
    CheckResultFactory(run=run, name=CheckName.HEALTH, status=CheckStatus.FAIL, required=True)
    CheckResultFactory(run=run, name=CheckName.SECURITY, status=CheckStatus.PASS, required=True)
    CheckResultFactory(run=run, name=CheckName.QUALITY, status=CheckStatus.FAIL, required=False)
    CheckResultFactory(run=run, name=CheckName.ROLLBACK, status=CheckStatus.FAIL, required=True)

    with django_capture_on_commit_callbacks(execute=True):
        transition(run, VerificationState.FAILED, machine=VERIFICATION)

    version = run.release.model_version
    assert Alert.objects.get().labels == {
        "alertname": "VerificationFailed",
        "severity": "critical",
        "event": "verification_failed",
        "deployment": "chat",
        "release": str(run.release.pk),
        "model": version.model.name,
        "version": str(version.number),
        "check": "health,rollback",
    }


def test_an_alert_bumped_after_the_sweep_found_it_due_stays_firing() -> None:
    """An event that lands between event_alerts_resolve reading what is due and resolving it (here:
    while the first due alert resolves, the other one's job fails again) keeps that alert open."""
    event_rule(keep_firing_seconds=0)
    raising.event_raise(event=EventKind.JOB_FAILED, labels=FAILED_JOB, now=T0)
    raising.event_raise(event=EventKind.JOB_FAILED, labels={**FAILED_JOB, "job": "8"}, now=T0)
    bumped: list[str] = []

    def fail_the_other_again(sender: Any, *, alert: Alert, **kwargs: Any) -> None:
        if alert.state == AlertState.RESOLVED and not bumped:
            other = "8" if alert.labels["job"] == "7" else "7"
            bumped.append(other)
            raising.event_raise(event=EventKind.JOB_FAILED, labels={**FAILED_JOB, "job": other}, now=at(60))

    signals.alert_changed.connect(fail_the_other_again, dispatch_uid="test-raising-race")
    try:
        assert raising.event_alerts_resolve(now=at(60)) == 1
    finally:
        signals.alert_changed.disconnect(dispatch_uid="test-raising-race")

    (other,) = Alert.objects.filter(labels__job=bumped[0])
    assert (other.state, other.occurrences, other.last_breach_at) == (AlertState.FIRING, 2, at(60))
    assert raising.event_alerts_resolve(now=at(120)) == 1
