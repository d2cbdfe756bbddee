"""The bell in the top bar and the toasts, live: what changed is announced on the Redis pub/sub channel
CHANNEL and fanned out by each websocket process's relay (apps/fleet/relay.py, as telemetry is).

What it costs: one Redis PUBLISH per batch of changes, whatever the number of open pages. Each web
(ASGI) process holds one subscription to CHANNEL and hands the text, encoded once here, to its local
sockets in memory (apps.alerts.consumers). The bell is on every page of every logged-in user, which
is the broadcast case DESIGN.md ("Live fan-out") measured: per-client channel-layer sends would cost
one Redis message per open tab per change.

signals.alert_changed is sent inside the transaction that changed the alert; the receiver marks the
alert once that commits. A publisher thread per process collects what was marked for GAP_S (one
evaluation round changes many alerts at once) and sends one `alerts.changed` message for the batch:
{"firing": <the bell's count, read once>, "new": [at most TOASTS_MAX toasts of alerts that just
started firing]}. The count announced last is kept in Redis (COUNT_KEY); `count_announce`, called
at the end of every evaluation round, publishes the count again when it has moved since, so a change
that sent no signal (an acknowledgement that expired) reaches the bell within one round.
"""

from __future__ import annotations

import datetime as dt
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
from apps.core.redis_clients import redis_client

log = logging.getLogger(__name__)

# The pub/sub channel every websocket process's relay subscribes to, and the relay's metrics label.
CHANNEL = "moc:alerts"
STREAM = "alerts"
# The count last announced (count_announce publishes when the count differs from it).
COUNT_KEY = "moc:alerts:count"
COUNT_KEY_TTL_S = 24 * 3600
CHANGED = "alerts.changed"
COUNT = "alerts.count"
# Marks within this long of the first are sent together.
GAP_S = 0.25
# At most this many toasts per message (more alerts starting at once: the bell's count says so).
TOASTS_MAX = 5


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


def toast(alert: Alert) -> dict[str, Any]:
    """What a toast shows of an alert that just started firing, and where it leads."""
    return {
        "id": alert.pk,
        "alertname": alert.rule.name,
        "severity": alert.rule.severity,
        "summary": alert.annotations.get("summary") or alert.rule.condition,
        "url": alert.get_absolute_url(),
    }


def batch_payload(alert_ids: set[int], *, now: dt.datetime) -> dict[str, Any]:
    """The one message of a batch: the bell's count, and toasts for the marked alerts that just
    started firing (the latest first)."""
    firing = selectors.firing_count(now=now)
    fresh = Alert.objects.select_related("rule").filter(pk__in=alert_ids, state=AlertState.FIRING)
    fresh = fresh.order_by("-fired_at", "-pk")
    new = [toast(a) for a in fresh if newly_fired(a, now)][:TOASTS_MAX]
    return {"firing": firing, "new": new}


def announce(payload: dict[str, Any]) -> bool:
    """Publish one `alerts.changed` message (and remember its count as the last announced); False
    when Redis is down (pages re-read the count when they reconnect)."""
    text = events.encode(CHANGED, payload)
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.set(COUNT_KEY, payload["firing"], ex=COUNT_KEY_TTL_S)
        pipe.publish(CHANNEL, text)
        pipe.execute()
    except Exception as exc:  # Redis is down: the database still has the truth
        log.warning("could not announce an alert change: %s", exc)
        return False
    return True


def count_announce() -> None:
    """Publish the bell's count when it differs from the count announced last (kept in Redis), so an
    acknowledgement that expired, or any change that sent no signal, reaches the bell within one
    evaluation round. Never raises: it ends every round (apps.alerts.tasks)."""
    try:
        firing = selectors.firing_count(now=timezone.now())
        # SET … GET, not GETSET: the key keeps its TTL whether or not the count moved.
        last = redis_client().set(COUNT_KEY, firing, ex=COUNT_KEY_TTL_S, get=True)
    except Exception as exc:
        log.warning("could not compare the bell's count with the last announced: %s", exc)
        return
    if last is None or int(last) != firing:
        announce({"firing": firing, "new": []})


class Publisher:
    """The process's sender: a daemon thread that sends what was marked, one message a batch."""

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

    def publish(self, alert_ids: set[int]) -> bool:
        """Send the batch's message; False when Redis is down."""
        return announce(batch_payload(alert_ids, now=timezone.now()))

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
            time.sleep(self.gap_s)  # let the rest of the round's changes arrive
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
