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
from apps.jobs.models import Job, JobCheckpoint, JobEvent, JobMetric

# A job's page follows its retry_of chain at most this far back.
LINEAGE_MAX = 20


def job_list() -> QuerySet[Job]:
    return Job.objects.select_related(
        "created_by",
        "model_version__model",
        "device__node",
        "pinned_device__node",
        "dataset",
        "output_version__model",
        "retry_of",
    )


def job_event_list(*, job: Job) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job=job)


def job_event_tail(*, job: Job, limit: int) -> tuple[list[JobEvent], int]:
    """The job's last `limit` log lines, oldest first, and how many lines it has in all."""
    events = job_event_list(job=job)
    tail = list(events.order_by("-at", "-id")[:limit])
    return tail[::-1], events.count()


def job_series(*, job: Job) -> dict[str, list[tuple[int, float]]]:
    """Every metric series of the job (train_loss, eval_loss, ...): name -> [(step, value)] by step,
    one point per step: the newest (a run that replays steps deletes the points it replays, but the
    points of a run from before that was so may still be there twice)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in (
        JobMetric.objects.filter(job=job).order_by("name", "step", "id").values_list("name", "step", "value")
    ):
        points = series.setdefault(name, [])
        if points and points[-1][0] == step:
            points.pop()
        points.append((step, value))
    return series


def job_checkpoints(*, job: Job) -> QuerySet[JobCheckpoint]:
    """The job's complete checkpoints still on disk, newest first."""
    return JobCheckpoint.objects.filter(job=job).order_by("-step")


def job_metrics_after(*, job_id: int, after: int, limit: int) -> list[JobMetric]:
    """The job's metric points written after the point with id `after`: the newest `limit` of them
    (plus one older, so a caller can tell whether some were left out), oldest first."""
    newest = JobMetric.objects.filter(job_id=job_id, pk__gt=after).order_by("-pk")[: limit + 1]
    return list(newest)[::-1]


def job_events_after(*, job_id: int, after: int, limit: int) -> list[JobEvent]:
    """The job's log lines written after the line with id `after`, as job_metrics_after."""
    newest = JobEvent.objects.filter(job_id=job_id, pk__gt=after).order_by("-pk")[: limit + 1]
    return list(newest)[::-1]


def job_lineage(*, job: Job) -> tuple[list[Job], list[Job]]:
    """The jobs this one retries (nearest first) and the jobs that retried it."""
    chain: list[Job] = []
    seen = {job.pk}
    current = job.retry_of
    while current is not None and current.pk not in seen and len(chain) < LINEAGE_MAX:
        chain.append(current)
        seen.add(current.pk)
        current = current.retry_of
    return chain, list(Job.objects.filter(retry_of=job).order_by("created_at", "id"))


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
