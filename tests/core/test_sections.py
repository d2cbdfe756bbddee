"""Sections a higher app shows on a lower app's page, fetched by htmx from the higher app's URL."""

from __future__ import annotations

from django.template import Context, Template

from apps.core import sections


def test_a_slot_renders_a_placeholder_that_loads_each_registered_section() -> None:
    sections.register("test.thing", title="Extras", url=lambda obj: f"/extras/{obj}/")

    html = Template('{% load moc %}{% sections "test.thing" 7 %}').render(Context())

    assert 'hx-get="/extras/7/"' in html
    assert 'hx-trigger="load"' in html
    assert "Loading extras" in html


def test_a_section_without_an_address_for_the_object_is_left_out() -> None:
    sections.register("test.maybe", title="Sometimes", url=lambda obj: None)

    assert sections.for_slot("test.maybe", 1) == []


def test_a_slot_nobody_registered_renders_nothing() -> None:
    html = Template('{% load moc %}{% sections "test.nobody" 1 %}').render(Context())

    assert "hx-get" not in html


def test_serving_shows_its_section_on_a_versions_page() -> None:
    [(section, url)] = sections.for_slot("registry.version", type("V", (), {"pk": 5})())

    assert (section.title, url) == ("Serving", "/serving/versions/5/")
