"""The payload of a webhook notification, in Alertmanager's webhook format (version 4).

Any receiver written for Alertmanager's `webhook_config` understands it: the group's
status, receiver, group/common labels and annotations, the external URL, and each alert
with its status, labels, annotations, RFC 3339 start and end, generator URL and fingerprint.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Alertmanager sends Go's zero time as the end of an alert that has not ended.
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class NotifiedAlert:
    status: str  # "firing" or "resolved"
    labels: Mapping[str, str]
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    fingerprint: str
    generator_url: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None  # for texts (email, log); Alertmanager's payload has no value


def rfc3339(moment: dt.datetime | None) -> str:
    if moment is None:
        return ZERO_TIME
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map has, with the same value."""
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in rest)}


def group_key(group_labels: Mapping[str, str]) -> str:
    """Alertmanager's key for a group under the root route: `{}:{label="value",…}`."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
    return "{}:{" + inner + "}"


def webhook_payload(
    alerts: Sequence[NotifiedAlert],
    receiver: str,
    external_url: str,
    *,
    group_by: Sequence[str] = ("alertname",),
    max_alerts: int = 0,
) -> dict[str, Any]:
    """The JSON body for one notification about one group of alerts.

    The group is firing while any alert in it fires. `max_alerts` > 0 keeps only that
    many alerts (firing ones first) and reports the rest in `truncatedAlerts`.
    """
    common_labels = _common([a.labels for a in alerts])
    group_labels = {k: common_labels[k] for k in group_by if k in common_labels}
    ordered = sorted(alerts, key=lambda a: a.status != "firing")
    kept = ordered[:max_alerts] if max_alerts > 0 else ordered
    return {
        "version": "4",
        "groupKey": group_key(group_labels),
        "truncatedAlerts": len(alerts) - len(kept),
        "status": "firing" if any(a.status == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": rfc3339(a.starts_at),
                "endsAt": rfc3339(a.ends_at),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in kept
        ],
    }
