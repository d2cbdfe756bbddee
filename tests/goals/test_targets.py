"""What a goal's target must say for each kind (pure)."""

from __future__ import annotations

import pytest

from apps.goals.domain.targets import GoalKind, target_errors


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (GoalKind.SERVE_MODEL, {"model": "llama-3-8b"}),
        (GoalKind.SERVE_MODEL, {"model": "llama-3-8b", "version": "3", "replicas": 2}),
        (GoalKind.IMPROVE_METRIC, {"metric": "p95_latency_ms", "op": "<=", "value": 200}),
        (GoalKind.KEEP_CAPACITY, {"metric": "free_vram_mib", "op": ">=", "value": 20000.5}),
        (GoalKind.CUSTOM, {}),
        (GoalKind.CUSTOM, {"anything": ["goes"]}),
    ],
)
def test_valid_targets_have_no_errors(kind: GoalKind, target: dict) -> None:
    assert target_errors(kind, target) == []


def test_a_target_must_be_an_object() -> None:
    assert target_errors(GoalKind.CUSTOM, [1, 2]) == ["must be a JSON object"]


def test_a_missing_required_key_is_named() -> None:
    assert target_errors(GoalKind.SERVE_MODEL, {}) == ["'model' is required for a serve_model goal"]


def test_an_unknown_key_is_named() -> None:
    errors = target_errors(GoalKind.SERVE_MODEL, {"model": "m", "colour": "red"})

    assert errors == ["'colour' is not a serve_model setting"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ({"metric": "x", "op": "~", "value": 1}, "'op' must be one of >, >=, <, <=, =="),
        ({"metric": "x", "op": ">", "value": "high"}, "'value' must be a finite number"),
        ({"metric": "x", "op": ">", "value": True}, "'value' must be a finite number"),
        ({"metric": "x", "op": ">", "value": float("inf")}, "'value' must be a finite number"),
        ({"metric": " ", "op": ">", "value": 1}, "'metric' must be a non-empty string"),
    ],
)
def test_a_malformed_condition_is_explained(target: dict, expected: str) -> None:
    assert target_errors(GoalKind.IMPROVE_METRIC, target) == [expected]


def test_replicas_must_be_at_least_one() -> None:
    errors = target_errors(GoalKind.SERVE_MODEL, {"model": "m", "replicas": 0})

    assert errors == ["'replicas' must be a whole number of at least 1"]
