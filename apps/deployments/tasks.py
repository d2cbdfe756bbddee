"""Deployments' tasks, thin: the rollout engine's ticks (beat, scheduled in moc_site/celery.py, and one
after each change) and verification runs. All on the default queue, all safe to run twice."""

from __future__ import annotations

from celery import shared_task

from apps.core.delivery import DurableTask
from apps.deployments import messages, rollout, verification


@shared_task(base=DurableTask, name=messages.RELEASE_TICK)
def release_tick(release_id: int) -> None:
    rollout.tick(release_id=release_id)


@shared_task(base=DurableTask)
def releases_advance() -> int:
    return rollout.advance_all()


@shared_task(base=DurableTask, name=messages.VERIFICATION_RUN)
def verification_run(run_id: int) -> None:
    verification.run(run_id=run_id)
