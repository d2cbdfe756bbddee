"""Channel-layer groups for jobs and the messages published to them."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from apps.core import audit, events
from apps.jobs.models import Job


def job_group(job_id: int) -> str:
    """Everything about one job: state changes and progress."""
    return f"job.{job_id}"


def job_brief(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "state": job.state,
        "queue": job.queue,
        "progress": job.progress,
        "message": job.message,
        "attempts": job.attempts,
        "error_class": job.error_class,
        "worker": job.worker,
    }


def publish_state(job: Job, *, action: str) -> None:
    """On commit: the job's new state to its group, and a line to the Overview's activity feed.

    Who did it comes from the request being served; without one (a worker, beat) it is MOC.
    """
    request = audit.current_request()
    user = getattr(request, "user", None)
    actor = user.get_username() if user is not None and user.is_authenticated else "moc"
    source = "system" if request is None else ("api" if request.path.startswith("/api/") else "page")
    events.publish_on_commit(job_group(job.pk), "job.updated", job_brief(job))
    events.publish_on_commit(
        events.ACTIVITY_GROUP,
        "activity.event",
        {
            "id": f"job-{job.pk}-{job.state}-{job.attempts}",
            "at": timezone.now().isoformat(),
            "actor": actor,
            "action": action,
            "object": str(job),
            "source": source,
        },
    )


def publish_progress(job_id: int, progress: float, message: str) -> None:
    """Progress goes to the job's group only: it is too chatty for the activity feed."""
    events.publish(
        job_group(job_id), "job.progress", {"id": job_id, "progress": progress, "message": message}
    )


def selftest_group(job_id: int, token: str) -> str:
    """A throwaway group a self-test sends itself a message through."""
    return f"selftest.{job_id}.{token}"
