"""The rollout engine (DB side, thin around apps.deployments.domain.rollout and .analysis): ticks
that move releases through their strategies, the operator's actions on a release, and the unload
of a retired deployment's replicas."""

from apps.deployments.rollout.actions import (
    release_abort,
    release_pause,
    release_promote,
    release_resume,
    release_rollback,
)
from apps.deployments.rollout.engine import advance_all, due_release_ids, tick
from apps.deployments.rollout.replicas import deployment_released

__all__ = [
    "advance_all",
    "deployment_released",
    "due_release_ids",
    "release_abort",
    "release_pause",
    "release_promote",
    "release_resume",
    "release_rollback",
    "tick",
]
