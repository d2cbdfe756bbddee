"""Pure rules of deployments: names and strategies."""

import pytest

from apps.deployments.domain.naming import name_problem
from apps.deployments.domain.strategy import DEFAULT_CANARY_STEPS, Strategy, steps_for


@pytest.mark.parametrize("name", ["chat", "chat-prod", "a", "llama3-8b-eu", "x" * 63])
def test_name_problem_accepts_url_safe_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "Chat", "3chat", "chat_prod", "chat-", "chat--prod", "x" * 64, "chat.prod"]
)
def test_name_problem_explains_bad_names(name: str) -> None:
    assert name_problem(name)


def test_a_canary_without_steps_gets_the_default() -> None:
    assert steps_for(Strategy.CANARY, None) == list(DEFAULT_CANARY_STEPS)


@pytest.mark.parametrize("steps", [[100], [10, 100], [1, 2, 3, 100]])
def test_a_canary_keeps_the_steps_it_was_given(steps: list[int]) -> None:
    assert steps_for(Strategy.CANARY, steps) == steps


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([10, 50], "The last step must be 100"),
        ([50, 10, 100], "Steps must rise"),
        ([0, 100], "between 1 and 100"),
        ([10, 101], "between 1 and 100"),
        ([10.5, 100], "between 1 and 100"),
        (list(range(1, 22)) + [100], "At most"),
    ],
)
def test_a_canary_refuses_steps_that_do_not_add_up(steps: list, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        steps_for(Strategy.CANARY, steps)


@pytest.mark.parametrize("strategy", [Strategy.RECREATE, Strategy.BLUE_GREEN])
def test_other_strategies_move_all_traffic(strategy: Strategy) -> None:
    assert steps_for(strategy, None) == []


@pytest.mark.parametrize("strategy", [Strategy.RECREATE, Strategy.BLUE_GREEN])
def test_other_strategies_refuse_steps(strategy: Strategy) -> None:
    with pytest.raises(ValueError, match="Only the canary strategy"):
        steps_for(strategy, [20, 100])
