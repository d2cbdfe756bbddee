"""The golden-set matching rules (apps.deployments.domain.quality): pure, no database."""

from __future__ import annotations

import pytest

from apps.deployments.domain.quality import GoldenItem, Match, judge, parse_golden_set, similarity


def test_exact_passes_the_same_text_with_surrounding_whitespace() -> None:
    verdict = judge("  Paris\n", GoldenItem("Capital of France?", "Paris", Match.EXACT))
    assert (verdict.score, verdict.ok) == (1.0, True)


def test_exact_fails_other_text() -> None:
    verdict = judge("Paris, France", GoldenItem("Capital of France?", "Paris", Match.EXACT))
    assert (verdict.score, verdict.ok) == (0.0, False)


def test_contains_passes_when_expected_occurs_in_the_output() -> None:
    assert judge("It is Paris, of course.", GoldenItem("q", "Paris", Match.CONTAINS)).ok


def test_contains_is_case_sensitive() -> None:
    assert not judge("it is paris", GoldenItem("q", "Paris", Match.CONTAINS)).ok


def test_similarity_passes_a_near_answer_at_the_tolerance() -> None:
    item = GoldenItem("q", "The quick brown fox", Match.SIMILARITY, tolerance=0.9)
    verdict = judge("the  QUICK brown fox.", item)
    assert verdict.ok
    assert 0.9 <= verdict.score < 1.0


def test_similarity_fails_a_distant_answer() -> None:
    item = GoldenItem("q", "The quick brown fox", Match.SIMILARITY, tolerance=0.8)
    verdict = judge("lorem ipsum dolor", item)
    assert not verdict.ok
    assert verdict.score < 0.5


def test_similarity_is_difflibs_ratio_of_the_normalised_texts() -> None:
    assert similarity("abcd", "ABCE") == pytest.approx(0.75)


def test_a_golden_set_takes_defaults_for_match_tolerance_and_tokens() -> None:
    (item,) = parse_golden_set([{"prompt": "Hi", "expected": "there"}])
    assert item == GoldenItem("Hi", "there", Match.EXACT, 0.8, 32)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"expected": "x"}, "prompt"),
        ({"prompt": "p"}, "expected"),
        ({"prompt": "p", "expected": "x", "match": "regex"}, "match"),
        ({"prompt": "p", "expected": "x", "tolerance": 1.5}, "tolerance"),
        ({"prompt": "p", "expected": "x", "max_new_tokens": 0}, "max_new_tokens"),
        ("just a string", "object"),
    ],
)
def test_a_malformed_item_is_refused_naming_the_item_and_field(raw: object, named: str) -> None:
    with pytest.raises(ValueError, match=rf"item 2: .*{named}"):
        parse_golden_set([{"prompt": "ok", "expected": "ok"}, raw])
