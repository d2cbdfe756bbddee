import pytest

from apps.core.domain.queues import Queue, device_queue, node_device_queues, parse_device_queue


def test_a_device_queue_is_kind_node_index() -> None:
    assert device_queue("gpu", "node1", 0) == "gpu.node1.0"


@pytest.mark.parametrize(
    ("queue", "parsed"),
    [
        ("gpu.node1.0", ("gpu", "node1", 0)),
        ("cpu.laptop.0", ("cpu", "laptop", 0)),
        ("default", None),
        ("tpu.node1.0", None),
        ("gpu.node1.x", None),
        ("gpu.node.1.0", None),
    ],
)
def test_only_device_queues_parse(queue: str, parsed: tuple[str, str, int] | None) -> None:
    assert parse_device_queue(queue) == parsed


def test_a_nodes_device_queues_leave_out_other_nodes_and_the_default_queue() -> None:
    queues = [Queue.DEFAULT, "gpu.a.1", "gpu.b.0", "cpu.a.0"]

    assert node_device_queues(queues, "a") == [("gpu", "a", 1), ("cpu", "a", 0)]
