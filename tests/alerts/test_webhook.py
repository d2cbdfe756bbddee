"""The webhook payload in Alertmanager's format (pure)."""

from __future__ import annotations

import datetime as dt

from apps.alerts.domain.webhook import NotifiedAlert, webhook_payload

T = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def alert(status: str = "firing", node: str = "gpu-01", **extra: object) -> NotifiedAlert:
    return NotifiedAlert(
        status=status,
        labels={"alertname": "GpuHot", "severity": "critical", "node": node},
        annotations={"summary": "GPU hot"},
        starts_at=T,
        ends_at=T + dt.timedelta(minutes=5) if status == "resolved" else None,
        generator_url=f"https://moc.example.com/alerts/{node}/",
        fingerprint=f"fp-{node}",
        **extra,
    )


def test_the_payload_has_every_top_level_key_of_version_4() -> None:
    payload = webhook_payload([alert()], "ops", "https://moc.example.com")

    assert set(payload) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert (payload["version"], payload["receiver"], payload["externalURL"]) == (
        "4",
        "ops",
        "https://moc.example.com",
    )


def test_each_alert_has_alertmanagers_keys_and_rfc3339_times() -> None:
    [item] = webhook_payload([alert()], "ops", "https://moc.example.com")["alerts"]

    assert item == {
        "status": "firing",
        "labels": {"alertname": "GpuHot", "severity": "critical", "node": "gpu-01"},
        "annotations": {"summary": "GPU hot"},
        "startsAt": "2025-06-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "https://moc.example.com/alerts/gpu-01/",
        "fingerprint": "fp-gpu-01",
    }


def test_a_resolved_alert_carries_its_end_time() -> None:
    [item] = webhook_payload([alert("resolved")], "ops", "")["alerts"]

    assert item["endsAt"] == "2025-06-01T12:05:00Z"


def test_the_group_fires_while_any_alert_fires() -> None:
    payload = webhook_payload([alert("resolved", "gpu-01"), alert("firing", "gpu-02")], "ops", "")

    assert payload["status"] == "firing"


def test_the_group_is_resolved_when_every_alert_is() -> None:
    payload = webhook_payload([alert("resolved", "gpu-01"), alert("resolved", "gpu-02")], "ops", "")

    assert payload["status"] == "resolved"


def test_common_labels_are_those_every_alert_shares() -> None:
    payload = webhook_payload([alert(node="gpu-01"), alert(node="gpu-02")], "ops", "")

    assert payload["commonLabels"] == {"alertname": "GpuHot", "severity": "critical"}


def test_group_labels_and_key_come_from_the_grouping_labels() -> None:
    payload = webhook_payload([alert(node="gpu-01"), alert(node="gpu-02")], "ops", "")

    assert payload["groupLabels"] == {"alertname": "GpuHot"}
    assert payload["groupKey"] == '{}:{alertname="GpuHot"}'


def test_max_alerts_truncates_keeping_firing_alerts_first() -> None:
    alerts = [alert("resolved", "gpu-01"), alert("firing", "gpu-02"), alert("firing", "gpu-03")]

    payload = webhook_payload(alerts, "ops", "", max_alerts=2)

    assert [a["fingerprint"] for a in payload["alerts"]] == ["fp-gpu-02", "fp-gpu-03"]
    assert payload["truncatedAlerts"] == 1


def test_times_in_other_zones_are_sent_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    moved = NotifiedAlert("firing", {}, T.astimezone(paris), None, "fp")

    [item] = webhook_payload([moved], "ops", "")["alerts"]

    assert item["startsAt"] == "2025-06-01T12:00:00Z"
