"""Log channels: one line per notification in MOC's log."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from apps.alerts.domain.templates import format_value
from apps.alerts.domain.webhook import NotifiedAlert
from apps.alerts.models import NotificationChannel
from apps.alerts.senders import Outcome
from apps.alerts.senders.email import subject

log = logging.getLogger("apps.alerts.notifications")
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def compose(
    channel: NotificationChannel,
    alerts: Sequence[NotifiedAlert],
    group_labels: Mapping[str, str],
    *,
    now: dt.datetime,
) -> str:
    """`[FIRING:1] alertname=GpuHot: GpuHot{node="gpu-01"} 91; …`"""

    def one(a: NotifiedAlert) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(a.labels.items()) if k != "alertname")
        value = f" {format_value(a.value)}" if a.value is not None else ""
        return f"{a.status} {a.labels.get('alertname', '')}{{{labels}}}{value}"

    return f"{subject(alerts, group_labels)}: " + "; ".join(one(a) for a in alerts)


def send(channel: NotificationChannel, body: str, *, timeout_s: float, now: dt.datetime) -> Outcome:
    log.log(LEVELS[channel.config.get("level", "info")], "%s: %s", channel.name, body)
    return Outcome(ok=True)
