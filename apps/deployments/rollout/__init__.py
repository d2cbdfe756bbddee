"""The rollout engine (DB side, thin around apps.deployments.domain.rollout and .analysis): ticks
that move releases through their strategies, and the operator's actions on a release."""

from apps.deployments.rollout.actions import (
    release_abort,
    release_pause,
    release_promote,
    release_resume,
    release_rollback,
)
from apps.deployments.rollout.engine import advance_all, due_release_ids, tick

__all__ = [
    "advance_all",
    "due_release_ids",
    "release_abort",
    "release_pause",
    "release_promote",
    "release_resume",
    "release_rollback",
    "tick",
]
