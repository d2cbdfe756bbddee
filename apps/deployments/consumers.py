"""A deployment page's websocket: `/ws/deployments/<name>/`.

It relays what is published to the deployment's group (release.changed, verification.check) and,
while connected, pushes the figures of the releases the page charts: the last fifteen minutes on
connect, then the newest buckets every PUSH_S seconds, each push one Redis round trip; and the
figures that drifted from their baseline (the anomaly badge) on connect and every ANOMALIES_S, as
the per-minute rollup they are judged on moves. Which releases are charted is read from the
database on connect and again after each release.changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import redis
from channels.db import database_sync_to_async
from django.utils import timezone

from apps.core.consumers import MocConsumer
from apps.core.redis_clients import redis_client
from apps.deployments import events, selectors
from apps.deployments.figures import BUCKET_S
from apps.deployments.models import Deployment, Release

log = logging.getLogger(__name__)

PUSH_S = 5
ANOMALIES_S = 60
# Close code for a deployment that does not exist.
CLOSE_NOT_FOUND = 4404


class DeploymentConsumer(MocConsumer):
    deployment_name = ""
    releases: list[Release]
    pusher: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.deployment_name = self.scope["url_route"]["kwargs"]["name"]
        self.releases = []
        found = await database_sync_to_async(self._read_releases)()
        if not found:
            # Accepted first, so the client can read the code (a refused handshake is a bare 403).
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.groups_to_join = (events.deployment_group(self.deployment_name),)
        await super().connect()
        self.pusher = asyncio.create_task(self._push_figures())

    async def disconnect(self, code: int) -> None:
        if self.pusher is not None:
            self.pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pusher
        await super().disconnect(code)

    async def release_changed(self, message: dict[str, Any]) -> None:
        await self.relay(message)
        await database_sync_to_async(self._read_releases)()

    async def verification_check(self, message: dict[str, Any]) -> None:
        await self.relay(message)

    def _read_releases(self) -> bool:
        """Read which releases to chart; False when there is no such deployment."""
        deployment = (
            Deployment.objects.select_related("current_release").filter(name=self.deployment_name).first()
        )
        if deployment is None:
            return False
        self.releases = selectors.chart_releases(deployment=deployment, now=timezone.now())
        return True

    def _anomalies(self, now: float) -> list[dict[str, Any]]:
        deployment = Deployment.objects.filter(name=self.deployment_name).first()
        if deployment is None:
            return []
        return [a.to_dict() for a in selectors.serving_anomalies(deployment=deployment, now=now)]

    async def _push_figures(self) -> None:
        since_s = selectors.LIVE_WINDOW_S
        judged = 0.0
        while True:
            now = time.time()
            if now - judged >= ANOMALIES_S:
                judged = now
                found = await database_sync_to_async(self._anomalies)(now)
                await self.send(
                    text_data=json.dumps({"type": "deployment.anomalies", "payload": {"anomalies": found}})
                )
            # Only buckets that are over: a bucket still filling would show a dip.
            until = now - BUCKET_S
            try:
                series = await asyncio.to_thread(
                    selectors.chart_series,
                    redis_client(),
                    list(self.releases),
                    since=now - since_s,
                    until=until,
                )
            except redis.RedisError as exc:
                log.warning("deployment %s: figures unavailable: %s", self.deployment_name, exc)
            else:
                payload = {"bucket_s": BUCKET_S, "releases": series}
                await self.send(text_data=json.dumps({"type": "deployment.figures", "payload": payload}))
                since_s = 3 * BUCKET_S
            await asyncio.sleep(PUSH_S)
