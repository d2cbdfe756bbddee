"""Label matchers and silences, with Alertmanager's semantics (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.alerts.domain.matchers import (
    Matcher,
    Silence,
    SilenceStatus,
    format_matchers,
    is_silenced,
    matcher_errors,
    parse_matchers,
    silence_status,
)

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
LABELS = {"alertname": "GpuHot", "node": "gpu-01", "severity": "critical"}


def silence(*matchers: Matcher, starts: dt.datetime = NOW - HOUR, ends: dt.datetime = NOW + HOUR) -> Silence:
    return Silence(matchers=matchers, starts_at=starts, ends_at=ends)


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        (Matcher("node", "=", "gpu-01"), True),
        (Matcher("node", "=", "gpu-02"), False),
        (Matcher("node", "!=", "gpu-02"), True),
        (Matcher("node", "!=", "gpu-01"), False),
        (Matcher("node", "=~", "gpu-0[12]"), True),
        (Matcher("node", "=~", "gpu-0[23]"), False),
        (Matcher("node", "!~", "gpu-0[23]"), True),
        (Matcher("node", "!~", "gpu-.*"), False),
    ],
)
def test_each_operator_matches_as_in_alertmanager(matcher: Matcher, expected: bool) -> None:
    assert matcher.matches(LABELS) is expected


def test_a_regex_must_match_the_whole_value() -> None:
    assert not Matcher("node", "=~", "gpu").matches(LABELS)


def test_a_regex_anchors_alternatives_too() -> None:
    assert not Matcher("node", "=~", "gpu|gpu-0").matches(LABELS)


def test_a_missing_label_reads_as_empty() -> None:
    assert Matcher("rack", "=", "").matches(LABELS)


def test_a_silence_mutes_when_every_matcher_matches() -> None:
    muting = silence(Matcher("alertname", "=", "GpuHot"), Matcher("node", "=~", "gpu-.*"))

    assert is_silenced(LABELS, [muting], NOW)


def test_a_silence_does_not_mute_when_one_matcher_fails() -> None:
    partial = silence(Matcher("alertname", "=", "GpuHot"), Matcher("node", "=", "gpu-02"))

    assert not is_silenced(LABELS, [partial], NOW)


def test_an_expired_silence_does_not_mute() -> None:
    old = silence(Matcher("node", "=", "gpu-01"), starts=NOW - 2 * HOUR, ends=NOW - HOUR)

    assert not is_silenced(LABELS, [old], NOW)


def test_a_silence_stops_muting_at_its_exact_end() -> None:
    ending = silence(Matcher("node", "=", "gpu-01"), ends=NOW)

    assert not is_silenced(LABELS, [ending], NOW)


def test_a_silence_that_has_not_started_does_not_mute() -> None:
    later = silence(Matcher("node", "=", "gpu-01"), starts=NOW + HOUR, ends=NOW + 2 * HOUR)

    assert not is_silenced(LABELS, [later], NOW)


def test_any_one_matching_silence_is_enough() -> None:
    silences = [silence(Matcher("node", "=", "gpu-09")), silence(Matcher("severity", "=", "critical"))]

    assert is_silenced(LABELS, silences, NOW)


@pytest.mark.parametrize(
    ("starts", "ends", "expected"),
    [
        (NOW + HOUR, NOW + 2 * HOUR, SilenceStatus.PENDING),
        (NOW, NOW + HOUR, SilenceStatus.ACTIVE),
        (NOW - HOUR, NOW, SilenceStatus.EXPIRED),
    ],
)
def test_silence_status_by_time(starts: dt.datetime, ends: dt.datetime, expected: SilenceStatus) -> None:
    assert silence_status(starts, ends, NOW) is expected


def test_valid_matchers_have_no_errors() -> None:
    assert matcher_errors([{"label": "node", "op": "=~", "value": "gpu-.*"}], require_one=True) == []


def test_a_bad_regex_is_named_with_its_position() -> None:
    [error] = matcher_errors([{"label": "node", "op": "=~", "value": "gpu-(["}], require_one=True)

    assert error.startswith("matcher 1: value: 'gpu-([' is not a valid regular expression")


def test_an_unknown_operator_is_named() -> None:
    [error] = matcher_errors([{"label": "node", "op": "~=", "value": "x"}], require_one=False)

    assert error == "matcher 1: op: must be one of =, !=, =~, !~"


def test_a_bad_label_name_is_named() -> None:
    [error] = matcher_errors([{"label": "1node", "op": "=", "value": "x"}], require_one=False)

    assert error.startswith("matcher 1: label: must be a label name")


def test_matchers_must_be_a_list() -> None:
    assert matcher_errors({"node": "x"}, require_one=False) == [
        "must be a list of {label, op, value} objects"
    ]


def test_a_silence_needs_a_matcher_that_rejects_empty_labels() -> None:
    errors = matcher_errors([{"label": "node", "op": "=~", "value": ".*"}], require_one=True)

    assert errors == ["at least one matcher must not match an empty label (it would silence everything)"]


def test_a_rule_may_have_no_matchers() -> None:
    assert matcher_errors([], require_one=False) == []


def test_parse_reads_alertmanager_text() -> None:
    parsed = parse_matchers('{alertname="GpuHot", node=~"gpu-0[12]", rack!=b, zone!~"eu-.*"}')

    assert parsed == [
        {"label": "alertname", "op": "=", "value": "GpuHot"},
        {"label": "node", "op": "=~", "value": "gpu-0[12]"},
        {"label": "rack", "op": "!=", "value": "b"},
        {"label": "zone", "op": "!~", "value": "eu-.*"},
    ]


def test_parse_keeps_commas_and_escaped_quotes_inside_quotes() -> None:
    assert parse_matchers(r'msg="a, \"b\""') == [{"label": "msg", "op": "=", "value": 'a, "b"'}]


def test_parse_keeps_regex_backslashes() -> None:
    assert parse_matchers(r'node=~"gpu-\d+"') == [{"label": "node", "op": "=~", "value": r"gpu-\d+"}]


def test_parse_refuses_text_without_an_operator() -> None:
    with pytest.raises(ValueError, match="cannot read a matcher at “node”"):
        parse_matchers("node")


def test_format_is_read_back_by_parse() -> None:
    matchers = [{"label": "msg", "op": "=~", "value": r'say "hi"\d'}]

    assert parse_matchers(format_matchers(matchers)) == matchers
