"""The sections serving shows on other apps' pages (apps.core.sections), each answered by a view of
its own (apps.serving.views)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse

from apps.core import sections


def _for_devices(name: str) -> Callable[[Iterable[Any]], str | None]:
    def url(devices: Iterable[Any]) -> str | None:
        ids = [d.pk for d in devices]
        return f"{reverse(name)}?{urlencode({'device': ids}, doseq=True)}" if ids else None

    return url


def register_all() -> None:
    sections.register(
        "fleet.devices", title="Models on these devices", url=_for_devices("serving:devices_section")
    )
    sections.register(
        "fleet.devices.live", title="Live placement lists", url=_for_devices("serving:devices_poller")
    )
    sections.register(
        "fleet.device",
        title="Models on this device",
        url=lambda d: reverse("serving:device_section", args=[d.pk]),
    )
    sections.register(
        "fleet.node", title="Active placements", url=lambda n: reverse("serving:node_section", args=[n.pk])
    )
    sections.register(
        "registry.version", title="Serving", url=lambda v: reverse("serving:version_section", args=[v.pk])
    )
