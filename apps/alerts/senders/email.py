"""Email channels, through Django's email backend (EMAIL_* settings)."""

from __future__ import annotations

import datetime as dt
import json
import smtplib
from collections.abc import Mapping, Sequence

from django.conf import settings
from django.core.mail import send_mail

from apps.alerts.domain.templates import format_value
from apps.alerts.domain.webhook import NotifiedAlert, rfc3339
from apps.alerts.models import NotificationChannel
from apps.alerts.senders import ERROR_CHARS, Outcome


def subject(alerts: Sequence[NotifiedAlert], group_labels: Mapping[str, str]) -> str:
    """`[FIRING:2] alertname=GpuHot node=gpu-01`, or `[RESOLVED] …` once nothing fires."""
    firing = sum(a.status == "firing" for a in alerts)
    status = f"FIRING:{firing}" if firing else "RESOLVED"
    labels = " ".join(f"{k}={v}" for k, v in sorted(group_labels.items()))
    return f"[{status}] {labels}".strip()


def _alert_text(alert: NotifiedAlert) -> str:
    lines = [f"- {alert.status.upper()} {alert.labels.get('alertname', '')}"]
    if summary := alert.annotations.get("summary"):
        lines.append(f"  {summary}")
    if description := alert.annotations.get("description"):
        lines.append(f"  {description}")
    lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items())))
    if alert.value is not None:
        lines.append(f"  value: {format_value(alert.value)}")
    lines.append(f"  since: {rfc3339(alert.starts_at)}")
    if alert.status == "resolved" and alert.ends_at:
        lines.append(f"  resolved: {rfc3339(alert.ends_at)}")
    if alert.generator_url:
        lines.append(f"  {alert.generator_url}")
    return "\n".join(lines)


def compose(
    channel: NotificationChannel,
    alerts: Sequence[NotifiedAlert],
    group_labels: Mapping[str, str],
    *,
    now: dt.datetime,
) -> str:
    """The message as JSON: {"subject", "text"}."""
    text = "\n\n".join(_alert_text(a) for a in alerts)
    text += f"\n\nAlerts: {settings.MOC_PUBLIC_URL.rstrip('/')}/alerts/\n"
    return json.dumps({"subject": subject(alerts, group_labels), "text": text}, ensure_ascii=False)


def send(channel: NotificationChannel, body: str, *, timeout_s: float, now: dt.datetime) -> Outcome:
    message = json.loads(body)
    try:
        send_mail(
            message["subject"],
            message["text"],
            settings.DEFAULT_FROM_EMAIL,
            channel.config["to"],
            fail_silently=False,
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
    return Outcome(ok=True)
