"""The sender of each channel kind."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Protocol

from apps.alerts.domain.channels import ChannelKind
from apps.alerts.domain.webhook import NotifiedAlert
from apps.alerts.models import NotificationChannel
from apps.alerts.senders import Outcome, alertmanager, email, log, webhook


class Sender(Protocol):
    def compose(
        self,
        channel: NotificationChannel,
        alerts: Sequence[NotifiedAlert],
        group_labels: Mapping[str, str],
        *,
        now: dt.datetime,
    ) -> str: ...

    def send(
        self, channel: NotificationChannel, body: str, *, timeout_s: float, now: dt.datetime
    ) -> Outcome: ...


SENDERS: dict[str, Sender] = {
    ChannelKind.WEBHOOK: webhook,
    ChannelKind.EMAIL: email,
    ChannelKind.ALERTMANAGER: alertmanager,
    ChannelKind.LOG: log,
}


def sender(channel: NotificationChannel) -> Sender:
    return SENDERS[channel.kind]
