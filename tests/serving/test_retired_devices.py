"""A device its node no longer offers (retired) is never a place for a model, whichever way it is
asked for."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.core import dispatch
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import placing
from tests.fleet.factories import GIB, DeviceFactory, NodeFactory
from tests.models.factories import ModelVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "send", lambda *args, **kwargs: None)


def lm(size_gib: float) -> Any:
    return ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        validation_state=ValidationState.VALID,
        estimated_vram_bytes=int(size_gib * GIB),
    )


def test_the_scheduler_never_chooses_a_retired_device() -> None:
    node = NodeFactory()
    # Healthy, and the best fit (the smallest that holds it): only its retirement keeps it out.
    DeviceFactory(node=node, index=0, kind="cpu", capacity_bytes=8 * GIB, retired_at=timezone.now())
    offered = DeviceFactory(node=node, index=0, capacity_bytes=64 * GIB)

    placement = placing.placement_load(version=lm(4))

    assert placement.device_id == offered.pk


def test_a_load_on_a_retired_device_is_refused_saying_it_is_retired() -> None:
    retired = DeviceFactory(capacity_bytes=64 * GIB, retired_at=timezone.now())

    with pytest.raises(placing.PlacementRefused, match="retired"):
        placing.placement_load(version=lm(4), device=retired)
