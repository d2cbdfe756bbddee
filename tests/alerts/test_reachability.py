"""Release verification reaches the notification channels alerts knows, without sending anything."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from apps.alerts.reachability import reach_channels
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.verification import notifications
from apps.deployments.verification.base import context_for
from apps.deployments.verification.checks import integrations
from tests.alerts.factories import NotificationChannelFactory
from tests.deployments.factories import ReleaseFactory
from tests.procs import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on this machine that accepts connections."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def test_alerts_registers_its_channels_with_verification() -> None:
    assert reach_channels in notifications.providers()


def test_each_enabled_channel_is_reached_and_a_closed_one_says_why(listening: int) -> None:
    closed = free_port()
    NotificationChannelFactory(name="a-up", config={"url": f"http://127.0.0.1:{listening}/hook"})
    NotificationChannelFactory(name="b-down", config={"url": f"http://127.0.0.1:{closed}/hook"})
    NotificationChannelFactory(name="c-log", kind="log", config={"level": "warning"})
    NotificationChannelFactory(name="d-off", config={"url": f"http://127.0.0.1:{closed}/"}, enabled=False)

    reached = reach_channels(2.0)

    assert [(r.channel, r.ok) for r in reached] == [("a-up", True), ("b-down", False), ("c-log", True)]
    assert f"127.0.0.1:{closed} cannot be reached" in reached[1].detail


def test_the_integrations_check_fails_naming_a_channel_it_cannot_reach(redis_server: object) -> None:
    closed = free_port()
    NotificationChannelFactory(name="pager", config={"url": f"http://127.0.0.1:{closed}/hook"})
    release = ReleaseFactory()

    outcome = integrations.run(context_for(release))

    assert outcome.status == CheckStatus.FAIL
    assert "notification channel pager:" in outcome.reason
