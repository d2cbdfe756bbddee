"""Forwarding to an Alertmanager over its API v2 (`POST /api/v2/alerts`), so teams that route with
Alertmanager keep doing so. Alertmanager groups, waits and repeats itself: MOC posts every alert
that fires while it fires (an alert not posted again before its endsAt passes is resolved by
Alertmanager) and a resolved one once, with endsAt its resolution.

A firing alert's endsAt is set when each attempt is sent, not when the Delivery is made: the
body kept on the Delivery leaves it out, so a retry minutes later never posts an endsAt already
past (which Alertmanager would take as a resolution of an alert that still fires)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence

from django.conf import settings

from apps.alerts.domain.webhook import NotifiedAlert, rfc3339
from apps.alerts.models import NotificationChannel
from apps.alerts.senders import Outcome
from apps.alerts.senders.http import post

API_PATH = "/api/v2/alerts"


def firing_ends_at(now: dt.datetime) -> dt.datetime:
    """The endsAt of a firing alert: four resends ahead, as Prometheus does, so one lost post
    does not resolve it but an alert MOC stops posting (muted, rule deleted) ends on its own."""
    return now + dt.timedelta(seconds=4 * settings.MOC_ALERTMANAGER_RESEND_S)


def compose(
    channel: NotificationChannel,
    alerts: Sequence[NotifiedAlert],
    group_labels: Mapping[str, str],
    *,
    now: dt.datetime,
) -> str:
    """API v2 postableAlerts; a firing one without its endsAt (`send` sets it)."""
    postable = []
    for a in alerts:
        one = {
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "startsAt": rfc3339(a.starts_at),
            "generatorURL": a.generator_url,
        }
        if a.status == "resolved" and a.ends_at:
            one["endsAt"] = rfc3339(a.ends_at)
        postable.append(one)
    return json.dumps(postable, ensure_ascii=False)


def with_ends(body: str, now: dt.datetime) -> str:
    """The body as sent at `now`: each firing alert (one without endsAt) ends four resends ahead."""
    ends = rfc3339(firing_ends_at(now))
    return json.dumps(
        [{**a, "endsAt": a.get("endsAt") or ends} for a in json.loads(body)], ensure_ascii=False
    )


def send(channel: NotificationChannel, body: str, *, timeout_s: float, now: dt.datetime) -> Outcome:
    url = channel.config["url"].rstrip("/") + API_PATH
    raw = with_ends(body, now).encode()
    return post(url, raw, headers={"Content-Type": "application/json"}, timeout_s=timeout_s)
