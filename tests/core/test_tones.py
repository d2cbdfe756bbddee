"""Badge tones: declared next to each state machine, one tone per value across MOC."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from apps.core.domain import tones


@pytest.mark.parametrize(
    ("value", "tone"),
    [
        ("failed", "bad"),
        ("running", "warn"),
        ("loaded", "ok"),
        ("valid", "ok"),
        ("fail", "bad"),
        ("queued", ""),
    ],
)
def test_each_state_has_the_tone_its_machine_declared(value: str, tone: str) -> None:
    assert tones.tone(value) == tone


def test_a_value_declared_with_two_tones_is_refused() -> None:
    with pytest.raises(ValueError, match="'failed' is declared both 'bad' and 'ok'"):
        tones.declare({"failed": "ok"})


def test_an_unknown_tone_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        tones.declare({"shiny": "great"})


def test_the_badge_filter_gives_the_css_class() -> None:
    html = Template('{% load moc %}<span class="badge {{ s|badge }}">{{ s }}</span>').render(
        Context({"s": "lost"})
    )

    assert html == '<span class="badge bad">lost</span>'
