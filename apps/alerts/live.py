"""The bell in the top bar and the toast, live: every alert change is announced on the channel-layer
group `alerts` (apps.alerts.consumers relays it to each logged-in page).

signals.alert_changed is sent inside the transaction that changed the alert; the receiver marks the
alert once that commits. A publisher thread per process collects what was marked for GAP_S (one
evaluation tick changes many alerts at once) and sends the batch: one `alerts.changed` message per
changed alert (those that just started firing first, at most BATCH_MAX), each carrying the count the
bell shows, read once per batch. Messages are encoded once, here; consumers send the text unchanged.

Why not a relay like telemetry's: a handful of messages a minute, far below what the layer carries
(DESIGN.md, "Live fan-out").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from apps.alerts import selectors, signals
from apps.alerts.domain.states import AlertState
from apps.alerts.models import Alert
from apps.core import events

log = logging.getLogger(__name__)

GROUP = "alerts"
CHANGED = "alerts.changed"
# Marks within this long of the first are sent together.
GAP_S = 0.25
# At most this many messages per batch (the last carries the count like every other).
BATCH_MAX = 20


def encode(event_type: str, payload: dict[str, Any]) -> str:
    """The standard envelope (apps.core.events), as the text every client is sent unchanged."""
    return json.dumps({"type": event_type, "payload": payload}, separators=(",", ":"))


def newly_fired(alert: Alert, now: dt.datetime) -> bool:
    """Whether the alert started firing within the last two evaluation intervals and nothing mutes
    it: what raises a toast (an ack or a silence of an alert firing for an hour does not)."""
    window = dt.timedelta(seconds=2 * settings.MOC_ALERT_EVAL_S + 5)
    return (
        alert.state == AlertState.FIRING
        and alert.fired_at is not None
        and now - alert.fired_at <= window
        and not (alert.silenced or alert.inhibited or alert.acknowledged)
    )


def alert_payload(alert: Alert, *, firing: int, now: dt.datetime) -> dict[str, Any]:
    """What the bell and the toast need of one changed alert, with the bell's count."""
    return {
        "id": alert.pk,
        "state": alert.state,
        "alertname": alert.rule.name,
        "severity": alert.rule.severity,
        "summary": alert.annotations.get("summary") or alert.rule.condition,
        "url": alert.get_absolute_url(),
        "new": newly_fired(alert, now),
        "firing": firing,
    }


def batch_messages(alert_ids: set[int], *, now: dt.datetime) -> list[str]:
    """The encoded messages for the alerts marked in one batch: those that started firing first."""
    firing = selectors.firing_count(now=now)
    alerts = list(Alert.objects.select_related("rule").filter(pk__in=alert_ids))
    payloads = [alert_payload(a, firing=firing, now=now) for a in alerts]
    payloads.sort(key=lambda p: (not p["new"], p["id"]))
    if not payloads:
        # The marked alerts are gone (rolled back, pruned): the count may still have moved.
        payloads = [{"id": None, "firing": firing, "new": False}]
    return [encode(CHANGED, p) for p in payloads[:BATCH_MAX]]


class Publisher:
    """The process's sender: a daemon thread that sends what was marked, a batch at a time."""

    def __init__(self, gap_s: float = GAP_S) -> None:
        self.gap_s = gap_s
        self._lock = threading.Lock()
        self._marked: set[int] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, alert_id: int) -> None:
        with self._lock:
            self._marked.add(alert_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="moc-alerts-live", daemon=True)
                self._thread.start()
        self._wake.set()

    def take(self) -> set[int]:
        with self._lock:
            marked, self._marked = self._marked, set()
        return marked

    def publish(self, alert_ids: set[int]) -> int:
        """Send the batch's messages; how many went out (0 when the layer is down)."""
        sent = 0
        for text in batch_messages(alert_ids, now=timezone.now()):
            sent += events.publish(GROUP, CHANGED, {"text": text})
        return sent

    def run_once(self) -> None:
        """One batch. Never raises: this thread is the process's only publisher, so a failure (the
        database, Redis) is logged and the next batch goes on; pages re-read the count on reconnect."""
        try:
            if marked := self.take():
                self.publish(marked)
        except Exception:
            log.exception("could not publish alert changes")
        try:
            close_old_connections()
        except Exception:
            log.exception("could not close the alert publisher's database connection")

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.gap_s)  # let the rest of the tick's changes arrive
            self._wake.clear()
            self.run_once()


PUBLISHER = Publisher()


def alert_changed(sender: Any, *, alert: Alert, **kwargs: Any) -> None:
    """A receiver of signals.alert_changed: the alert is announced once its change is committed."""
    alert_id = alert.pk
    transaction.on_commit(lambda: PUBLISHER.mark(alert_id))


def connect() -> None:
    """Announce every alert change (called from AlertsConfig.ready)."""
    signals.alert_changed.connect(alert_changed, dispatch_uid="moc-alerts-live-changed")
