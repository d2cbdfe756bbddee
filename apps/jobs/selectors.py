"""Reads of jobs, for the API, the pages and the Overview."""

from __future__ import annotations

import datetime as dt

import redis
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone

from apps.core import workers
from apps.core.domain.queues import Queue
from apps.jobs.domain.states import JOB, JobState
from apps.jobs.models import Job, JobEvent


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related("created_by", "model_version__model", "device__node")


def job_event_list(*, job: Job) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job=job)


def job_event_tail(*, job: Job, limit: int) -> tuple[list[JobEvent], int]:
    """The job's last `limit` log lines, oldest first, and how many lines it has in all."""
    events = job_event_list(job=job)
    tail = list(events.order_by("-at", "-id")[:limit])
    return tail[::-1], events.count()


def queue_choices() -> list[str]:
    """`default` first, then every queue a live worker consumes."""
    try:
        live = workers.live_queues()
    except redis.RedisError:  # Redis down: offer the default queue; /readyz says what is wrong
        live = set()
    return [Queue.DEFAULT, *sorted(live - {Queue.DEFAULT})]


def overview_cards() -> list[dict]:
    since = timezone.now() - dt.timedelta(hours=24)
    counts = Job.objects.aggregate(
        running=Count("pk", filter=Q(state__in=[JobState.RUNNING, JobState.CANCELLING])),
        queued=Count("pk", filter=Q(state=JobState.QUEUED)),
        failed=Count("pk", filter=Q(state=JobState.FAILED, finished_at__gte=since)),
        succeeded=Count("pk", filter=Q(state=JobState.SUCCEEDED, finished_at__gte=since)),
    )
    hint = f"{counts['queued']} queued · in 24 h {counts['succeeded']} done, {counts['failed']} failed"
    return [
        {
            "label": "Jobs running",
            "value": counts["running"],
            "url": reverse("jobs:list"),
            "hint": hint,
        }
    ]


def jobs_finished_per_hour(*, now: dt.datetime, hours: int = 24) -> dict[str, object]:
    """Jobs finished in each of the last `hours` hours, by final state, for the Overview's chart."""
    start = (now - dt.timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    slots = [start + dt.timedelta(hours=i) for i in range(hours)]
    rows = (
        Job.objects.filter(finished_at__gte=start, state__in=JOB.terminal)
        .annotate(hour=TruncHour("finished_at"))
        .values("hour", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {(row["hour"], row["state"]): row["n"] for row in rows}
    return {
        "hours": [slot.isoformat() for slot in slots],
        "series": {state: [counts.get((slot, state), 0) for slot in slots] for state in sorted(JOB.terminal)},
    }
