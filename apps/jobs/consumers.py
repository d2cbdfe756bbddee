"""The job pages' websockets: `/ws/jobs/<id>/` (one job's updates) and `/ws/jobs/` (the list's rows).

A user with a role (MocConsumer) who may view jobs (VIEW_PERM, as the pages and the API ask) may
follow them; what they relay is published, already encoded, by apps.jobs.live. A page reads its
snapshot over HTTP on every (re)connect.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from apps.core.consumers import MocConsumer
from apps.jobs import live
from apps.jobs.models import Job

# Close codes: a user who may not view jobs (before the handshake is accepted, so a browser sees
# the server refuse it), and a job that does not exist.
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
VIEW_PERM = "jobs.view_job"


async def may_view(scope: dict[str, Any]) -> bool:
    user = scope.get("user")
    return user is not None and bool(await database_sync_to_async(user.has_perm)(VIEW_PERM))


class JobConsumer(MocConsumer):
    """`/ws/jobs/<id>/`: `job.update` messages (apps.jobs.live.job_update's payload)."""

    async def connect(self) -> None:
        if not await may_view(self.scope):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        job_id = self.scope["url_route"]["kwargs"]["pk"]
        if not await database_sync_to_async(Job.objects.filter(pk=job_id).exists)():
            # Accepted first, so the client can read the code (a refused handshake is a bare 403).
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.groups_to_join = (live.job_group(job_id),)
        await super().connect()

    async def job_update(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["payload"]["text"])


class JobListConsumer(MocConsumer):
    """`/ws/jobs/`: a `jobs.row` message (apps.jobs.live.job_row) for every job that changed."""

    groups_to_join = (live.LIST_GROUP,)

    async def connect(self) -> None:
        if not await may_view(self.scope):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await super().connect()

    async def jobs_row(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["payload"]["text"])
