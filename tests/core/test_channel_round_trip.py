"""The channel layer's health probe that the job self-test and release verification share."""

from __future__ import annotations

import pytest
from django.test.utils import override_settings

from apps.core import events
from tests.procs import RedisServer


def test_a_message_goes_through_a_group_and_comes_back(redis_server: RedisServer) -> None:
    backend, ms = events.round_trip("probe.test", timeout_s=5)

    assert backend == "RedisChannelLayer"
    assert ms > 0


def test_no_channel_layer_is_said_plainly() -> None:
    with override_settings(CHANNEL_LAYERS={}), pytest.raises(RuntimeError, match="no channel layer"):
        events.round_trip("probe.test", timeout_s=1)
