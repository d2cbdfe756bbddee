"""What the registry asks of the apps above it, which it does not import."""

from __future__ import annotations

from django.db import models
from django.dispatch import Signal

NAMED_MAX = 5  # rows of each kind a refusal names

# A version is about to become a version of another model (services.version_move), inside the
# transaction that moves it, its row and both models' rows locked: sent with sender=ModelVersion,
# `version` (still of the model it leaves) and `model` (the one it joins). Each receiver answers
# with what of its own uses the version now, e.g. "active placements 4, 9", or
# None; any answer refuses the move. History (a placement unloaded, a release ended) is no use.
version_moving = Signal()


def rows_named(what: str, rows: models.QuerySet) -> str | None:
    """`what` followed by the ids of the first NAMED_MAX of `rows`, e.g. "releases 4, 9", or
    None when there are none: how a refusal says what uses a version or a model."""
    ids = list(rows.order_by("pk").values_list("pk", flat=True)[:NAMED_MAX])
    return f"{what} {', '.join(map(str, ids))}" if ids else None
