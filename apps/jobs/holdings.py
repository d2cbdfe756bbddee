"""Jobs as holders in serving's memory ledger (apps.serving.ledger): a job holds the memory it
reserved on its device from the moment the dispatcher reserved it (still QUEUED, its task on its
way to the device's worker, or waiting for the idle models it evicted to be unloaded) while it runs
and while it is being cancelled; it lets go when it ends, yields or is put back in the queue (those
clear its reservation). It is "running here" on that device's pages."""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Q, QuerySet, Subquery, Sum

from apps.fleet.holdings import Holding
from apps.jobs.domain.states import JOB_ACTIVE, JobState
from apps.jobs.models import Job
from apps.serving import ledger


def holding_jobs() -> QuerySet[Job]:
    """The jobs that hold device memory now: running or cancelling, or reserved for and dispatched."""
    return Job.objects.filter(
        Q(state__in=JOB_ACTIVE) | Q(state=JobState.QUEUED, reserved_bytes__gt=0), device__isnull=False
    )


class JobHolder:
    def held_bytes(self) -> Subquery:
        return ledger.per_device(holding_jobs(), Sum("reserved_bytes"))

    def holdings(self, device_ids: Collection[int]) -> dict[int, list[Holding]]:
        found: dict[int, list[Holding]] = {}
        for job in holding_jobs().filter(device_id__in=list(device_ids)).order_by("pk"):
            found.setdefault(job.device_id, []).append(
                Holding(
                    kind="job",
                    label=str(job),
                    held_bytes=job.reserved_bytes,
                    url=job.get_absolute_url(),
                    state=job.state,
                )
            )
        return found


JOBS = JobHolder()
