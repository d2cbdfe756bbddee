import pytest

from apps.models.domain import naming


@pytest.mark.parametrize("name", ["llama-3.1-8b", "Mistral_7B", "a", "x" * naming.NAME_MAX])
def test_name_problem_accepts_slug_like_names(name: str) -> None:
    assert naming.name_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", "-leading-dash", "has space", "org/model", "x" * (naming.NAME_MAX + 1), "é"]
)
def test_name_problem_explains_a_bad_name(name: str) -> None:
    assert naming.name_problem(name)


def test_clean_tags_lower_cases_strips_and_deduplicates_in_order() -> None:
    assert naming.clean_tags([" LLM", "chat", "llm"]) == ["llm", "chat"]


def test_clean_tags_names_the_bad_tag() -> None:
    with pytest.raises(ValueError, match="'bad tag'"):
        naming.clean_tags(["ok", "bad tag"])


def test_clean_tags_refuses_too_many_tags() -> None:
    with pytest.raises(ValueError, match="At most"):
        naming.clean_tags([f"t{i}" for i in range(naming.TAGS_MAX + 1)])


@pytest.mark.parametrize(
    ("name", "ok"), [("production", True), ("canary-2", True), ("Prod", False), ("", False)]
)
def test_alias_problem_wants_lower_case_slugs(name: str, ok: bool) -> None:
    assert (naming.alias_problem(name) is None) is ok
