import pytest

from apps.serving import selectors
from apps.serving.domain.states import PlacementState
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db


def _card(label: str) -> dict:
    return next(card for card in selectors.overview_cards() if card["label"] == label)


def test_loaded_models_card_counts_loaded_placements_and_those_in_motion() -> None:
    PlacementFactory(state=PlacementState.LOADED)
    PlacementFactory(state=PlacementState.LOADING)
    PlacementFactory(state=PlacementState.FAILED)

    card = _card("Loaded models")

    assert (card["value"], card["hint"]) == (1, "1 loading or unloading")
