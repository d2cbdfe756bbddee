"""Running jobs as holders in serving's memory ledger (apps.serving.ledger): while a job runs (or is
being cancelled) it holds the memory it reserved on its device, and it is "running here" on that
device's pages."""

from __future__ import annotations

from collections.abc import Collection

from django.db.models import Subquery, Sum

from apps.fleet.holdings import Holding
from apps.jobs.domain.states import JOB_ACTIVE
from apps.jobs.models import Job
from apps.serving import ledger


class JobHolder:
    def held_bytes(self) -> Subquery:
        return ledger.per_device(Job.objects.filter(state__in=JOB_ACTIVE), Sum("reserved_bytes"))

    def holdings(self, device_ids: Collection[int]) -> dict[int, list[Holding]]:
        found: dict[int, list[Holding]] = {}
        for job in Job.objects.filter(device_id__in=list(device_ids), state__in=JOB_ACTIVE).order_by("pk"):
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
