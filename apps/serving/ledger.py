"""The memory ledger: what MOC holds on each device, the one place that adds it up.

A device's memory is held by its active placements (what loading measured, else what was
reserved) and by other holders that register here: a running job's reservation (apps.jobs
registers its holder, since serving may not import jobs). The scheduler (apps.serving.placing)
reads the sum under the devices' row locks to decide what fits; fleet's pages and simulated
devices read the same figures through apps.fleet.holdings, for which this module is the provider.

Why holders instead of a table of holdings: a job's row already says whether it holds memory
(its state) and how much; a second table would have to follow every job transition and could
disagree with it. Each holder answers from its own rows, in a fixed number of queries.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from django.db.models import (
    Aggregate,
    Count,
    Expression,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from apps.fleet.holdings import Activity, Holding
from apps.fleet.models import Device
from apps.serving.domain.states import PLACEMENT_ACTIVE
from apps.serving.models import Placement


class Holder(Protocol):
    """Something other than placements that holds device memory."""

    def held_bytes(self) -> Expression:
        """Per Device row (as OuterRef("pk")), the bytes it holds there: an SQL expression."""
        ...

    def holdings(self, device_ids: Collection[int]) -> dict[int, list[Holding]]:
        """What it has on these devices (only the devices where it has something)."""
        ...


_holders: list[Holder] = []


def register(holder: Holder) -> None:
    """Count `holder` in the ledger (called from the holding app's AppConfig.ready)."""
    if holder not in _holders:
        _holders.append(holder)


def _int(expression: Expression | Subquery) -> Coalesce:
    return Coalesce(expression, Value(0), output_field=IntegerField())


def per_device(rows: QuerySet, total: Aggregate) -> Subquery:
    """Per Device row (as OuterRef("pk")), the aggregate `total` over those of `rows` on that
    device, as one SQL subquery: the shape every holder's figure takes."""
    on_device = rows.filter(device=OuterRef("pk")).order_by().values("device")
    return Subquery(on_device.annotate(total=total).values("total"))


def _active() -> QuerySet[Placement]:
    return Placement.objects.filter(state__in=PLACEMENT_ACTIVE)


def placements_held_bytes() -> Coalesce:
    """Per Device row, what its active placements hold (Placement.held_bytes, summed in SQL)."""
    return _int(per_device(_active(), Sum(Coalesce("measured_bytes", "reserved_bytes"))))


def others_held_bytes() -> Expression | Value:
    """Per Device row, what the registered holders (running jobs) hold."""
    total: Expression | Value = Value(0, output_field=IntegerField())
    for holder in _holders:
        total = total + _int(holder.held_bytes())
    return total


def held_bytes() -> Expression:
    """Per Device row, everything MOC holds there: placements and the other holders."""
    return placements_held_bytes() + others_held_bytes()


def held(device_ids: Collection[int]) -> dict[int, int]:
    """Per device id, what MOC holds there (one query): the sum the scheduler decides by."""
    rows = Device.objects.filter(pk__in=list(device_ids)).annotate(held=held_bytes())
    return {pk: int(total) for pk, total in rows.values_list("pk", "held")}


class LedgerHoldings:
    """The ledger as fleet asks for it (apps.fleet.holdings.Provider)."""

    def annotate(self, devices: QuerySet[Device]) -> QuerySet[Device]:
        return devices.annotate(
            reserved_bytes=held_bytes(),
            active_placements=_int(per_device(_active(), Count("pk"))),
        )

    def holdings(self, device_ids: Collection[int]) -> dict[int, list[Holding]]:
        found: dict[int, list[Holding]] = {pk: [] for pk in device_ids}
        placements = (
            Placement.objects.filter(device_id__in=list(device_ids), state__in=PLACEMENT_ACTIVE)
            .select_related("version__model")
            .order_by("created_at", "pk")
        )
        for p in placements:
            found[p.device_id].append(
                Holding(
                    kind="placement",
                    label=str(p.version),
                    held_bytes=p.held_bytes,
                    url=p.version.get_absolute_url(),
                    state=p.get_state_display().lower(),
                )
            )
        for holder in _holders:
            for pk, things in holder.holdings(device_ids).items():
                found.setdefault(pk, []).extend(things)
        return found

    def activity(self, device_ids: Collection[int]) -> dict[int, Activity]:
        ids = list(device_ids)
        figures = {
            pk: (bytes_held, uses)
            for pk, bytes_held, uses in Device.objects.filter(pk__in=ids)
            .annotate(held=held_bytes(), uses=_int(per_device(_active(), Sum("use_count"))))
            .values_list("pk", "held", "uses")
        }
        running: dict[int, int] = dict.fromkeys(ids, 0)
        for holder in _holders:
            for pk, things in holder.holdings(ids).items():
                running[pk] = running.get(pk, 0) + sum(1 for h in things if h.kind == "job")
        found = {}
        for pk in ids:
            bytes_held, uses = figures.get(pk, (0, 0))
            found[pk] = Activity(held_bytes=bytes_held, running_jobs=running[pk], uses=uses)
        return found
