"""The filters every page writes sizes, moments and names from disk with."""

from __future__ import annotations

import datetime as dt

import pytest
from django.template import Context, Template
from django.utils import timezone

from apps.core.domain.text import counted, printable
from apps.core.templatetags.moc import ago, bytes_filter, when

GiB = 1024**3


def _render(source: str, **context: object) -> str:
    return Template("{% load moc %}" + source).render(Context(context))


def test_bytes_writes_binary_units_labelled_as_such_on_one_line() -> None:
    assert bytes_filter(int(11.8 * GiB)) == "11.8\xa0GiB"
    assert bytes_filter(700416) == "684.0\xa0KiB"
    assert bytes_filter(512) == "512\xa0B"


def test_bytes_leaves_an_unknown_size_empty_so_default_can_fill_it() -> None:
    assert _render('{{ size|bytes|default:"—" }}', size=None) == "—"
    assert _render('{{ size|bytes|default:"—" }}', size="n/a") == "—"


def test_when_is_24_hour_in_the_current_time_zone() -> None:
    moment = dt.datetime(2026, 12, 7, 21, 5, 9, tzinfo=dt.UTC)
    with timezone.override("Europe/Berlin"):
        assert when(moment) == "2026-12-07 22:05:09"
    assert when(None) == ""


@pytest.mark.parametrize(("seconds", "text"), [(0, "just now"), (59, "just now"), (61, "1\xa0minute ago")])
def test_ago_says_just_now_under_a_minute_and_never_zero_minutes(seconds: int, text: str) -> None:
    assert ago(timezone.now() - dt.timedelta(seconds=seconds)) == text


def test_ago_keeps_only_the_largest_unit() -> None:
    assert ago(timezone.now() - dt.timedelta(days=2, hours=3)) == "2\xa0days ago"


def test_printable_shows_control_characters_as_visible_escapes() -> None:
    assert printable("weights\n.bin") == "weights\\n.bin"
    assert printable("a\x1bb\x7fc\x85") == "a\\x1bb\\x7fc\\x85"
    assert printable("plain-name_ü.gguf") == "plain-name_ü.gguf"


def test_printable_shows_characters_that_change_how_a_name_reads() -> None:
    assert printable("evil\u202egguf.exe") == "evil\\u202egguf.exe"
    assert printable("zero\u200bwidth\u2028line") == "zero\\u200bwidth\\u2028line"


def test_printable_leaves_printable_text_as_it_is_so_showing_it_twice_changes_nothing() -> None:
    once = printable("a\nb\u202e")
    assert printable(once) == once


def test_the_printable_filter_escapes_html_after_making_controls_visible() -> None:
    assert _render("{{ name|printable }}", name="<b>\n") == "&lt;b&gt;\\n"


@pytest.mark.parametrize(
    ("n", "noun", "plural", "text"),
    [
        (1, "file", "", "1 file"),
        (2, "file", "", "2 files"),
        (1024, "tensor", "", "1,024 tensors"),
        (0, "entry", "entries", "0 entries"),
    ],
)
def test_counted_puts_the_noun_in_the_right_number(n: int, noun: str, plural: str, text: str) -> None:
    assert counted(n, noun, plural) == text
