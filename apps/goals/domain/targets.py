"""What a goal's target must say, per kind.

- serve_model: {"model": "<registered model name>", "version": "<optional>", "replicas": <int ≥ 1, optional>}
- improve_metric: a condition to reach once, {"metric": "<name>", "op": ">=", "value": <number>}
- keep_capacity: a condition to keep holding, same shape as improve_metric
  (e.g. {"metric": "free_vram_mib", "op": ">=", "value": 20000})
- custom: any JSON object; progress is reported by hand.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any


class GoalKind(StrEnum):
    SERVE_MODEL = "serve_model"
    IMPROVE_METRIC = "improve_metric"
    KEEP_CAPACITY = "keep_capacity"
    CUSTOM = "custom"


KIND_CHOICES = [
    (GoalKind.SERVE_MODEL.value, "Serve a model"),
    (GoalKind.IMPROVE_METRIC.value, "Improve a metric"),
    (GoalKind.KEEP_CAPACITY.value, "Keep capacity"),
    (GoalKind.CUSTOM.value, "Custom"),
]

CONDITION_OPS = (">", ">=", "<", "<=", "==")

_KEYS = {
    GoalKind.SERVE_MODEL: ({"model"}, {"version", "replicas"}),
    GoalKind.IMPROVE_METRIC: ({"metric", "op", "value"}, set()),
    GoalKind.KEEP_CAPACITY: ({"metric", "op", "value"}, set()),
}


def target_errors(kind: str, target: Any) -> list[str]:
    """Everything wrong with `target` for a goal of `kind`; empty when it is valid."""
    if not isinstance(target, dict):
        return ["must be a JSON object"]
    if kind == GoalKind.CUSTOM:
        return []
    required, optional = _KEYS[GoalKind(kind)]
    errors = [f"'{key}' is required for a {kind} goal" for key in sorted(required - target.keys())]
    errors += [f"'{key}' is not a {kind} setting" for key in sorted(target.keys() - required - optional)]
    if "model" in target and not _text(target["model"]):
        errors.append("'model' must be a non-empty string")
    if "version" in target and not _text(target["version"]):
        errors.append("'version' must be a non-empty string")
    if "replicas" in target and not (_integer(target["replicas"]) and target["replicas"] >= 1):
        errors.append("'replicas' must be a whole number of at least 1")
    if "metric" in target and not _text(target["metric"]):
        errors.append("'metric' must be a non-empty string")
    if "op" in target and target["op"] not in CONDITION_OPS:
        errors.append(f"'op' must be one of {', '.join(CONDITION_OPS)}")
    if "value" in target and not _number(target["value"]):
        errors.append("'value' must be a finite number")
    return errors


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
