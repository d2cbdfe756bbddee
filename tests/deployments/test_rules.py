"""Pure rules of deployments: names and strategies."""

import pytest

from apps.deployments.domain.naming import name_problem
from apps.deployments.domain.strategy import DEFAULT_CANARY_PERCENT, Strategy, canary_percent_for


@pytest.mark.parametrize("name", ["chat", "chat-prod", "a", "llama3-8b-eu", "x" * 63])
def test_name_problem_accepts_url_safe_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "Chat", "3chat", "chat_prod", "chat-", "chat--prod", "x" * 64, "chat.prod"]
)
def test_name_problem_explains_bad_names(name: str) -> None:
    assert name_problem(name)


def test_a_canary_without_a_share_gets_the_default() -> None:
    assert canary_percent_for(Strategy.CANARY, None) == DEFAULT_CANARY_PERCENT


@pytest.mark.parametrize("percent", [1, 50, 99])
def test_a_canary_keeps_the_share_it_was_given(percent: int) -> None:
    assert canary_percent_for(Strategy.CANARY, percent) == percent


@pytest.mark.parametrize("percent", [0, 100])
def test_a_canary_must_take_some_but_not_all_traffic(percent: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 99"):
        canary_percent_for(Strategy.CANARY, percent)


@pytest.mark.parametrize("strategy", [Strategy.ALL_AT_ONCE, Strategy.BLUE_GREEN])
def test_other_strategies_move_all_traffic(strategy: Strategy) -> None:
    assert canary_percent_for(strategy, None) == 0


@pytest.mark.parametrize("strategy", [Strategy.ALL_AT_ONCE, Strategy.BLUE_GREEN])
def test_other_strategies_refuse_a_share(strategy: Strategy) -> None:
    with pytest.raises(ValueError, match="Only the canary strategy"):
        canary_percent_for(strategy, 20)
