"""Webhook channels: Alertmanager's version-4 payload, or the operator's template rendered over it
(sandboxed, apps/alerts/domain/templates.py); signed with the channel's secret when it has one."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence

from django.conf import settings

from apps.alerts.domain.signing import HEADER, sign
from apps.alerts.domain.templates import render_body
from apps.alerts.domain.webhook import NotifiedAlert, webhook_payload
from apps.alerts.models import NotificationChannel
from apps.alerts.senders import Outcome
from apps.alerts.senders.http import post


def compose(
    channel: NotificationChannel,
    alerts: Sequence[NotifiedAlert],
    group_labels: Mapping[str, str],
    *,
    now: dt.datetime,
) -> str:
    """The body; raises TemplateRefused when the channel's template refuses to render."""
    payload = webhook_payload(
        alerts,
        receiver=channel.name,
        external_url=settings.MOC_PUBLIC_URL,
        group_by=list(group_labels),
        max_alerts=channel.config.get("max_alerts", 0),
    )
    template = channel.config.get("template")
    if template:
        return render_body(template, payload)
    return json.dumps(payload, ensure_ascii=False)


def content_type(body: str) -> str:
    """JSON when the body is JSON (the default payload, most templates), plain text otherwise."""
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def send(channel: NotificationChannel, body: str, *, timeout_s: float, now: dt.datetime) -> Outcome:
    raw = body.encode()
    headers = {"Content-Type": content_type(body)}
    if secret := channel.config.get("secret"):
        headers[HEADER] = sign(secret, raw, int(now.timestamp()))
    return post(channel.config["url"], raw, headers=headers, timeout_s=timeout_s)
