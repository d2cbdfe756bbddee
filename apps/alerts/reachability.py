"""Whether each enabled notification channel can be reached, for release verification's
integrations check (apps.deployments.verification.notifications, registered in AlertsConfig.ready).

Nothing is sent: a webhook's host is reached by a TCP connection to its port, an email channel's
by one to the SMTP server MOC sends through (EMAIL_HOST:EMAIL_PORT); a log channel writes to
MOC's own log and is always there.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from django.conf import settings

from apps.alerts.domain.channels import ChannelKind
from apps.alerts.models import NotificationChannel
from apps.deployments.verification.notifications import Reached


def reach_channels(timeout_s: float) -> list[Reached]:
    """Each enabled channel's answer; all of them together take at most about `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    reached = []
    for channel in NotificationChannel.objects.filter(enabled=True).order_by("name"):
        left = max(0.1, deadline - time.monotonic())
        reached.append(Reached(channel.name, *_reach(channel, left)))
    return reached


def _reach(channel: NotificationChannel, timeout_s: float) -> tuple[bool, str]:
    if channel.kind == ChannelKind.WEBHOOK:
        parts = urlsplit(str(channel.config.get("url", "")))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return _connect(parts.hostname or "", port, timeout_s)
    if channel.kind == ChannelKind.EMAIL:
        return _connect(settings.EMAIL_HOST, int(settings.EMAIL_PORT), timeout_s)
    return True, "writes to MOC's log"


def _connect(host: str, port: int, timeout_s: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port} cannot be reached: {exc}"
