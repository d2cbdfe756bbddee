"""What the apps below tell alerts, turned into event alerts (connected in AlertsConfig.ready).

Each receiver only notes what happened; the alert is raised once the sender's transaction
committed (a failure that was rolled back raises nothing), from rows read then. Alerting never
breaks the caller: whatever goes wrong raising an alert is logged and swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from apps.alerts.domain.events import EventKind
from apps.alerts.raising import event_raise, event_watched, placement_labels
from apps.core.transitions import transitioned
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.domain.states import ReleaseState, VerificationState
from apps.deployments.models import CheckResult, Release, VerificationRun
from apps.deployments.signals import release_ended
from apps.fleet.models import Node
from apps.fleet.signals import node_offline
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement

log = logging.getLogger(__name__)


def _later(event: EventKind, raise_it: Callable[[], object]) -> None:
    """Run `raise_it` once the current transaction commits (at once outside one) if a rule watches
    `event`; never raising."""

    def run() -> None:
        try:
            if event_watched(event):
                raise_it()
        except Exception:
            log.exception("could not raise the %s alert", event.value)

    transaction.on_commit(run)


def _version_labels(version: Any) -> dict[str, str]:
    return {"model": version.model.name, "version": str(version.number)}


# Jobs


def job_transitioned(sender: Any, *, instance: Job, **kwargs: Any) -> None:
    if instance.state == JobState.FAILED:
        job_id = instance.pk
        _later(EventKind.JOB_FAILED, lambda: job_failed(job_id))


def job_failed(job_id: int) -> None:
    job = Job.objects.select_related("model_version__model").get(pk=job_id)
    labels = {"job": str(job.pk), "kind": job.kind, "queue": job.queue, "error_class": job.error_class}
    if job.model_version is not None:
        labels |= _version_labels(job.model_version)
    event_raise(
        event=EventKind.JOB_FAILED,
        labels=labels,
        value=float(job.attempts) if job.attempts else None,
        details={"error": job.error} if job.error else None,
    )


# Deployments


def release_labels(release: Release) -> dict[str, str]:
    return {
        "deployment": release.deployment.name,
        "release": str(release.pk),
        **_version_labels(release.model_version),
    }


def verification_transitioned(sender: Any, *, instance: VerificationRun, **kwargs: Any) -> None:
    if instance.state == VerificationState.FAILED:
        run_id = instance.pk
        _later(EventKind.VERIFICATION_FAILED, lambda: verification_failed(run_id))


def verification_failed(run_id: int) -> None:
    runs = VerificationRun.objects.select_related("release__deployment", "release__model_version__model")
    run = runs.get(pk=run_id)
    failed = CheckResult.objects.filter(run=run, status=CheckStatus.FAIL, required=True)
    labels = release_labels(run.release) | {
        "check": ",".join(failed.order_by("id").values_list("name", flat=True))
    }
    event_raise(event=EventKind.VERIFICATION_FAILED, labels=labels)


def release_ended_received(
    sender: Any, *, release: Release, outcome: str, reason: str, **kwargs: Any
) -> None:
    if outcome == ReleaseState.ROLLED_BACK:
        release_id = release.pk
        _later(EventKind.RELEASE_ROLLED_BACK, lambda: release_rolled_back(release_id, reason))


def release_rolled_back(release_id: int, reason: str) -> None:
    release = Release.objects.select_related("deployment", "model_version__model").get(pk=release_id)
    event_raise(
        event=EventKind.RELEASE_ROLLED_BACK,
        labels=release_labels(release),
        details={"reason": reason} if reason else None,
    )


# Fleet and serving


def node_offline_received(sender: Any, *, node: Node, reason: str, **kwargs: Any) -> None:
    name = node.name
    _later(
        EventKind.NODE_LOST,
        lambda: event_raise(
            event=EventKind.NODE_LOST, labels={"node": name}, details={"reason": reason} if reason else None
        ),
    )


def placement_transitioned(sender: Any, *, instance: Placement, **kwargs: Any) -> None:
    if instance.state == PlacementState.LOST:
        placement_id = instance.pk
        _later(EventKind.PLACEMENT_LOST, lambda: placement_lost(placement_id))


def placement_lost(placement_id: int) -> None:
    placement = Placement.objects.select_related("version__model", "device__node").get(pk=placement_id)
    event_raise(
        event=EventKind.PLACEMENT_LOST,
        labels=placement_labels(placement),
        details={"error": placement.error} if placement.error else None,
    )


def connect() -> None:
    """Listen for every event an event rule can name (breaker openings are read by breakers_check)."""
    transitioned.connect(job_transitioned, sender=Job, dispatch_uid="moc-alerts-job-failed")
    transitioned.connect(
        verification_transitioned, sender=VerificationRun, dispatch_uid="moc-alerts-verification-failed"
    )
    transitioned.connect(placement_transitioned, sender=Placement, dispatch_uid="moc-alerts-placement-lost")
    release_ended.connect(
        release_ended_received, sender=Release, dispatch_uid="moc-alerts-release-rolled-back"
    )
    node_offline.connect(node_offline_received, sender=Node, dispatch_uid="moc-alerts-node-lost")
