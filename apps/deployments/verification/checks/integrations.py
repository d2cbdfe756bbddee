"""integrations: the broker answers, the channel layer carries a message, and the notification
channels registered with verification.notifications answer."""

from __future__ import annotations

import uuid
from typing import Any

from celery import current_app

from apps.core import events
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification import notifications
from apps.deployments.verification.base import Context, Outcome, one_line

NAME = CheckName.INTEGRATIONS
DESCRIPTION = "The broker, the channel layer and the notification channels answer"
TIMEOUT_S = 30.0
_STEP_TIMEOUT_S = 5.0
NO_CHANNELS = "no notification channels configured"


def run(ctx: Context) -> Outcome:
    evidence: dict[str, Any] = {}
    problems: list[str] = []
    for part, probe in (("broker", broker), ("channel_layer", channel_layer)):
        try:
            evidence[part] = probe()
        except Exception as exc:
            evidence[part] = f"{type(exc).__name__}: {exc}"
            problems.append(f"{part.replace('_', ' ')}: {evidence[part]}")
    reached = [r for provider in notifications.providers() for r in provider(_STEP_TIMEOUT_S)]
    evidence["notification_channels"] = [
        {"channel": r.channel, "ok": r.ok, "detail": r.detail} for r in reached
    ]
    problems += [f"notification channel {r.channel}: {r.detail}" for r in reached if not r.ok]
    if problems:
        return Outcome(CheckStatus.FAIL, one_line("; ".join(problems)), evidence)
    channels = f"{len(reached)} notification channel(s) answered" if reached else NO_CHANNELS
    return Outcome(CheckStatus.PASS, f"the broker and the channel layer answer; {channels}", evidence)


def broker() -> str:
    """Connect to the Celery broker (one try, bounded); what answered."""
    with current_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=_STEP_TIMEOUT_S)
        return f"{connection.transport_cls} at {connection.as_uri()}"


def channel_layer() -> str:
    """Send a message to a group of its own over the channel layer and receive it."""
    group = f"verification.{uuid.uuid4().hex}"
    backend, ms = events.round_trip(group, timeout_s=_STEP_TIMEOUT_S)
    return f"a message went through group {group} and came back ({backend}, {ms:.1f} ms)"
