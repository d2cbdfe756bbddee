import pytest

from apps.models import selectors
from apps.models.domain.states import ValidationState
from tests.models.factories import ModelVersionFactory, RegisteredModelFactory

pytestmark = pytest.mark.django_db


def _card(label: str) -> dict:
    return next(card for card in selectors.overview_cards() if card["label"] == label)


def test_models_card_counts_models_that_are_not_archived() -> None:
    RegisteredModelFactory()
    RegisteredModelFactory(archived=True)

    assert (_card("Models")["value"], _card("Models")["hint"]) == (1, "1 archived")


def test_versions_card_breaks_versions_down_by_validation_state() -> None:
    ModelVersionFactory(validation_state=ValidationState.VALID)
    ModelVersionFactory(validation_state=ValidationState.VALID)
    ModelVersionFactory(validation_state=ValidationState.INVALID)

    card = _card("Model versions")

    assert (card["value"], card["hint"]) == (3, "2 valid · 1 invalid")
