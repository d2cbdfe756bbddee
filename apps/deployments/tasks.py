"""Deployments' tasks, thin: the rollout engine's ticks (beat, scheduled in moc_site/celery.py, and one
after each change), verification runs and the serving figures' per-minute rollup (beat). All on the
default queue, all safe to run twice."""

from __future__ import annotations

import time

from celery import shared_task

from apps.core.delivery import DurableTask
from apps.core.redis_clients import redis_client
from apps.deployments import messages, rollout, rollup, verification


@shared_task(base=DurableTask, name=messages.RELEASE_TICK)
def release_tick(release_id: int) -> None:
    rollout.tick(release_id=release_id)


@shared_task(base=DurableTask)
def releases_advance() -> int:
    return rollout.advance_all()


@shared_task(base=DurableTask, name=messages.VERIFICATION_RUN)
def verification_run(run_id: int) -> None:
    verification.run(run_id=run_id)


@shared_task(base=DurableTask)
def serving_minutes_roll_up() -> dict[str, int]:
    done = rollup.minutes_roll_up(client=redis_client(), now=time.time())
    return {"minutes": done.minutes, "pruned": done.pruned}
