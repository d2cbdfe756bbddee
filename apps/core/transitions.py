"""Moving a row through its state machine with a conditional UPDATE.

The UPDATE only matches while the row is still in a state the move is allowed from, so a
retried or duplicated task cannot move a row twice or backwards (healthchecks' pattern).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.dispatch import Signal
from django.utils import timezone

from apps.core.domain.statemachine import InvalidTransition, StateMachine

# Sent (sender: the model class, instance: the row) after a row moved: a conditional UPDATE sends no
# post_save, and a cache of rows elsewhere (the data plane's routes) must hear of the move.
transitioned = Signal()


def transition(
    obj: models.Model, dst: str, *, machine: StateMachine, field: str = "state", **changes: Any
) -> bool:
    """Move `obj` to `dst` if the machine allows it from the state in the database.

    Returns False when another writer got there first (the row is no longer in a source
    state); raises InvalidTransition when the move is never allowed from obj's state.
    """
    machine.check(getattr(obj, field), dst)
    if any(f.name == "updated_at" for f in obj._meta.concrete_fields):
        changes.setdefault("updated_at", timezone.now())
    updated = (
        type(obj)
        ._default_manager.filter(pk=obj.pk, **{f"{field}__in": machine.sources(dst)})
        .update(**{field: dst}, **changes)
    )
    if updated:
        setattr(obj, field, dst)
        for name, value in changes.items():
            setattr(obj, name, value)
        transitioned.send(sender=type(obj), instance=obj)
    return updated == 1


__all__ = ["InvalidTransition", "transition", "transitioned"]
