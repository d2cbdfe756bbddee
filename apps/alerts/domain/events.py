"""Things that happen once and may raise an alert on their own: the event kinds event rules
name, and the labels each kind's alerts carry (so the rule editor can offer them)."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    JOB_FAILED = "job_failed"
    VERIFICATION_FAILED = "verification_failed"
    RELEASE_ROLLED_BACK = "release_rolled_back"
    NODE_LOST = "node_lost"
    PLACEMENT_LOST = "placement_lost"
    BREAKER_OPENED = "breaker_opened"


EVENT_LABELS: dict[EventKind, str] = {
    EventKind.JOB_FAILED: "A job failed",
    EventKind.VERIFICATION_FAILED: "A release's verification failed",
    EventKind.RELEASE_ROLLED_BACK: "A release was rolled back",
    EventKind.NODE_LOST: "A node stopped sending heartbeats",
    EventKind.PLACEMENT_LOST: "A loaded model was lost",
    EventKind.BREAKER_OPENED: "A placement's circuit breaker opened",
}

# The labels an event of each kind carries (besides `alertname`, `severity` and `event`).
EVENT_LABEL_NAMES: dict[EventKind, tuple[str, ...]] = {
    EventKind.JOB_FAILED: ("job", "kind", "queue", "error_class", "model", "version"),
    EventKind.VERIFICATION_FAILED: ("deployment", "release", "model", "version", "check"),
    EventKind.RELEASE_ROLLED_BACK: ("deployment", "release", "model", "version"),
    EventKind.NODE_LOST: ("node",),
    EventKind.PLACEMENT_LOST: ("placement", "model", "version", "node", "device"),
    EventKind.BREAKER_OPENED: ("placement", "model", "version", "node", "device"),
}

# The labels that say which thing an event is about: one alert per rule and identity, however
# often it happens while the alert is open (a breaker that opens again bumps its alert).
EVENT_IDENTITY: dict[EventKind, tuple[str, ...]] = {
    EventKind.JOB_FAILED: ("job",),
    EventKind.VERIFICATION_FAILED: ("release",),
    EventKind.RELEASE_ROLLED_BACK: ("release",),
    EventKind.NODE_LOST: ("node",),
    EventKind.PLACEMENT_LOST: ("placement",),
    EventKind.BREAKER_OPENED: ("placement",),
}
