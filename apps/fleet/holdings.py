"""What occupies a device, as the apps above fleet know it: the one interface fleet reads it through.

Fleet knows nodes, devices and their readings. What MOC put on a device (placements, running jobs'
reservations) belongs to apps above it, which fleet must not import. The app that keeps the
memory ledger (apps.serving) registers a provider here when Django starts; fleet's pages, API and
simulated devices ask it. With none registered, devices hold nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.db.models import IntegerField, QuerySet, Value

if TYPE_CHECKING:
    from apps.fleet.models import Device


@dataclass(frozen=True, slots=True)
class Holding:
    """One thing on a device: a placement holding memory, or a job running there."""

    kind: str  # "placement" or "job": the memory bar draws placements, and names jobs
    label: str
    held_bytes: int
    url: str
    state: str = ""  # as a person reads it, e.g. "loaded"


@dataclass(frozen=True, slots=True)
class Activity:
    """What a simulated device's figures follow: memory held, jobs running, requests served so far."""

    held_bytes: int = 0
    running_jobs: int = 0
    uses: int = 0


class Provider(Protocol):
    def annotate(self, devices: QuerySet[Device]) -> QuerySet[Device]:
        """`devices` with `reserved_bytes` (memory MOC holds there) and `active_placements` (a count)."""
        ...

    def holdings(self, device_ids: Collection[int]) -> dict[int, list[Holding]]:
        """Per device id (every one asked for), what is on it."""
        ...

    def activity(self, device_ids: Collection[int]) -> dict[int, Activity]:
        """Per device id (every one asked for), what a simulated device's load follows."""
        ...


class NothingHeld:
    """The provider until one registers: fleet on its own places nothing."""

    def annotate(self, devices: QuerySet[Device]) -> QuerySet[Device]:
        zero = Value(0, output_field=IntegerField())
        return devices.annotate(reserved_bytes=zero, active_placements=zero)

    def holdings(self, device_ids: Collection[int]) -> dict[int, list[Holding]]:
        return {pk: [] for pk in device_ids}

    def activity(self, device_ids: Collection[int]) -> dict[int, Activity]:
        return {pk: Activity() for pk in device_ids}


_provider: Provider = NothingHeld()


def register(provider: Provider) -> None:
    """Make `provider` the one fleet asks (called from the ledger app's AppConfig.ready)."""
    global _provider
    _provider = provider


def provider() -> Provider:
    return _provider
