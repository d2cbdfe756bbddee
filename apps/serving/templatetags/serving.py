"""Template filters of serving's pages."""

from __future__ import annotations

from django import template

from apps.fleet.models import Device
from apps.serving.placing.devices import memory_kind_of

register = template.Library()


@register.filter
def memory_kind(device: Device) -> str:
    """The memory a device's loads are measured in ("host memory", or its GPU's model): a measured
    figure holds for later loads on devices of that kind only."""
    return str(memory_kind_of(device))
