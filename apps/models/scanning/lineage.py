"""Lineage a scan can see: the base an adapter's adapter_config.json names, recorded as the
adapter version's parent once that base is registered (apps.models.selectors.adapter_bases).

A scan links an adapter once per named base: `linked_base` keeps the base it linked from, and an
adapter is linked again only when its adapter_config.json names another one. So a parent an
operator cleared or changed afterwards stays as the operator left it, a base registered after
its adapter is still found by a later scan (nothing was linked yet), and a parent an operator
gave an adapter the scan never linked is not replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError

from apps.models import selectors, services
from apps.models.models import ModelVersion


def adapters_link(*, roots: Sequence[str]) -> int:
    """Link each adapter under `roots` to the base it names, where that base is not the one it was
    last linked from; how many were linked."""
    adapters = [
        adapter
        for adapter in ModelVersion.objects.filter(root__in=roots, kind="adapter")
        if (named := selectors.adapter_named_base(adapter))
        and named != adapter.linked_base
        and (adapter.parent_id is None or adapter.linked_base)
    ]
    bases = selectors.adapter_bases(adapters)
    linked = 0
    for adapter in adapters:
        if (base := bases.get(adapter.pk)) is None:
            continue
        try:
            services.version_set_parent(version=adapter, parent=base)
        except ValidationError:  # the base descends from the adapter: lineage cannot loop
            continue
        named = selectors.adapter_named_base(adapter)
        ModelVersion.objects.filter(pk=adapter.pk).update(linked_base=named)
        linked += 1
    return linked
