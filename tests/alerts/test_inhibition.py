"""Inhibition (pure): a firing alert mutes the alerts its rule targets that share the `equal` labels."""

from __future__ import annotations

from apps.alerts.domain.inhibition import InhibitSpec, inhibited
from apps.alerts.domain.matchers import Matcher

NODE_DOWN = InhibitSpec(
    source=(Matcher("alertname", "=", "NodeDown"),),
    target=(Matcher("device", "=~", ".+"),),
    equal=("node",),
)
DOWN_01 = {"alertname": "NodeDown", "node": "gpu-01", "severity": "critical"}


def hot(node: str, device: str = "0") -> dict[str, str]:
    return {"alertname": "GpuHot", "node": node, "device": device, "severity": "warning"}


def test_a_node_down_alert_inhibits_that_nodes_device_alerts() -> None:
    assert inhibited(hot("gpu-01"), [DOWN_01], [NODE_DOWN])
    assert inhibited(hot("gpu-01", "3"), [DOWN_01], [NODE_DOWN])


def test_it_does_not_inhibit_another_nodes_device_alerts() -> None:
    assert not inhibited(hot("gpu-02"), [DOWN_01], [NODE_DOWN])


def test_an_alert_that_is_not_a_target_is_not_inhibited() -> None:
    node_hot = {"alertname": "NodeHeartbeatLate", "node": "gpu-01"}  # no device label

    assert not inhibited(node_hot, [DOWN_01], [NODE_DOWN])


def test_no_source_firing_inhibits_nothing() -> None:
    assert not inhibited(hot("gpu-01"), [hot("gpu-01", "1")], [NODE_DOWN])
    assert not inhibited(hot("gpu-01"), [DOWN_01], [])


def test_every_equal_label_must_match() -> None:
    rule = InhibitSpec(NODE_DOWN.source, NODE_DOWN.target, equal=("node", "rack"))
    source = {**DOWN_01, "rack": "r1"}

    assert inhibited({**hot("gpu-01"), "rack": "r1"}, [source], [rule])
    assert not inhibited({**hot("gpu-01"), "rack": "r2"}, [source], [rule])


def test_an_equal_label_missing_on_both_sides_counts_as_equal() -> None:
    rule = InhibitSpec(NODE_DOWN.source, NODE_DOWN.target, equal=("node", "rack"))

    assert inhibited(hot("gpu-01"), [DOWN_01], [rule])


def test_an_alert_never_inhibits_itself() -> None:
    devices_mute_each_other = InhibitSpec(
        source=(Matcher("device", "=~", ".+"),), target=(Matcher("device", "=~", ".+"),), equal=("node",)
    )
    alone = hot("gpu-01")

    assert not inhibited(alone, [alone], [devices_mute_each_other])
    assert inhibited(alone, [alone, hot("gpu-01", "1")], [devices_mute_each_other])
