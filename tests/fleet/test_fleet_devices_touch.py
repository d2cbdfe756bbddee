"""`manage.py fleet_devices --touch`: the run command marks its node seen before starting the workers,
so a restart after a long stop is not taken for a lost node by beat's first sweep."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from apps.fleet.domain.states import NodeState
from apps.fleet.models import Node
from apps.fleet.registration import nodes_mark_offline
from tests.fleet.factories import NodeFactory

pytestmark = pytest.mark.django_db


@override_settings(MOC_NODE_NAME="rack-a-01", MOC_NODE_OFFLINE_AFTER_S=60)
def test_touch_keeps_a_node_stopped_for_long_from_being_swept_offline() -> None:
    long_ago = timezone.now() - dt.timedelta(hours=3)
    NodeFactory(name="rack-a-01", state=NodeState.ONLINE, last_heartbeat_at=long_ago)
    out = StringIO()

    call_command("fleet_devices", "--touch", stdout=out)

    assert "rack-a-01: online" in out.getvalue()
    assert nodes_mark_offline() == []
    assert Node.objects.get(name="rack-a-01").state == NodeState.ONLINE


@override_settings(MOC_NODE_NAME="rack-a-01", MOC_NODE_OFFLINE_AFTER_S=60)
def test_without_touch_the_first_sweep_calls_it_lost() -> None:
    NodeFactory(
        name="rack-a-01", state=NodeState.ONLINE, last_heartbeat_at=timezone.now() - dt.timedelta(hours=3)
    )

    assert nodes_mark_offline() == ["rack-a-01"]


@override_settings(MOC_NODE_NAME="never-seen")
def test_touch_on_a_node_not_registered_yet_writes_nothing() -> None:
    out = StringIO()

    call_command("fleet_devices", "--touch", stdout=out)

    assert "not registered yet" in out.getvalue()
    assert not Node.objects.exists()
