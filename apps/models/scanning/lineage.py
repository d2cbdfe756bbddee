"""Lineage a scan can see: the base an adapter's adapter_config.json names, recorded as the
adapter version's parent once that base is registered (apps.models.selectors.adapter_bases).

A parent already recorded (by an operator, or by an earlier scan) is never replaced; adapters
without one are looked at on every scan, so a base registered after its adapter is found too.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError

from apps.models import selectors, services
from apps.models.models import ModelVersion


def adapters_link(*, roots: Sequence[str]) -> int:
    """Give every adapter under `roots` without a parent the base it names; how many got one."""
    adapters = list(ModelVersion.objects.filter(root__in=roots, kind="adapter", parent__isnull=True))
    bases = selectors.adapter_bases(adapters)
    linked = 0
    for adapter in adapters:
        if (base := bases.get(adapter.pk)) is None:
            continue
        try:
            services.version_set_parent(version=adapter, parent=base)
        except ValidationError:  # the base descends from the adapter: lineage cannot loop
            continue
        linked += 1
    return linked
