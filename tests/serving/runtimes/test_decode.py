"""The decode loop and the sampler against scripted logits: no model, every branch forced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from apps.serving.runtimes import DeadlineExceeded, decode  # noqa: E402

VOCAB = 8
EOS = 0
CPU = torch.device("cpu")


def scripted(tokens: list[int]) -> tuple[Callable[[Any, Any], tuple[Any, Any]], list[int]]:
    """A step that makes token tokens[i] certain at step i, and records the lengths it was fed."""
    fed: list[int] = []

    def step(inputs: Any, cache: Any) -> tuple[Any, Any]:
        fed.append(inputs.shape[1])
        logits = torch.full((VOCAB,), -1e9)
        logits[tokens[len(fed) - 1]] = 0.0
        return logits, (cache or 0) + 1

    return step, fed


def letters(ids: list[int]) -> str:
    return "".join("abcdefgh"[i] for i in ids)


ARGS: dict[str, Any] = {
    "prompt_ids": [1, 2, 3],
    "eos": frozenset({EOS}),
    "stops": [],
    "temperature": 0.0,
    "top_p": 1.0,
    "generator": torch.Generator().manual_seed(0),
    "device": CPU,
    "deadline": None,
    "detokenize": letters,
}


def run(tokens: list[int], **overrides: Any) -> decode.Decoded:
    return decode.run(scripted(tokens)[0], **{**ARGS, "budget": len(tokens), **overrides})


def test_run_feeds_the_prompt_once_then_one_token_at_a_time() -> None:
    step, fed = scripted([4, 5, 6])

    decode.run(step, **{**ARGS, "budget": 3})

    assert fed == [3, 1, 1]


def test_run_stops_at_the_budget_with_finish_reason_length() -> None:
    decoded = run([4, 5, 6, 7], budget=2)

    assert (decoded.ids, decoded.text, decoded.finish_reason) == ([4, 5], "ef", "length")


def test_run_ends_at_end_of_text_without_its_token() -> None:
    decoded = run([4, 5, EOS, 6])

    assert (decoded.ids, decoded.text, decoded.finish_reason) == ([4, 5], "ef", "eos")


def test_run_cuts_the_text_before_the_first_stop_string() -> None:
    decoded = run([4, 5, 6, 7, 4, 5], stops=["gh", "fg"])

    assert (decoded.text, decoded.finish_reason) == ("e", "stop")
    assert decoded.ids == [4, 5, 6]


def test_run_checks_the_deadline_before_each_token() -> None:
    with pytest.raises(DeadlineExceeded, match="after 0 of 3 tokens"):
        run([4, 5, 6], deadline=0.0)


def test_pick_is_greedy_at_temperature_zero() -> None:
    logits = torch.tensor([0.1, 2.0, 1.9, -1.0])

    assert decode.pick(logits, temperature=0.0, top_p=1.0, generator=torch.Generator()) == 1


def test_pick_with_a_small_top_p_keeps_only_the_most_likely_token() -> None:
    logits = torch.tensor([1.0, 3.0, 2.9, 2.8])
    generator = torch.Generator().manual_seed(5)

    picks = {decode.pick(logits, temperature=1.0, top_p=0.2, generator=generator) for _ in range(200)}

    assert picks == {1}


def test_pick_with_top_p_one_samples_every_token_in_proportion() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    generator = torch.Generator().manual_seed(7)

    picks = [decode.pick(logits, temperature=1.0, top_p=1.0, generator=generator) for _ in range(3000)]

    shares = [picks.count(i) / len(picks) for i in range(3)]
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.04)


def test_pick_gives_the_same_tokens_for_the_same_seed() -> None:
    logits = torch.randn(VOCAB, generator=torch.Generator().manual_seed(1))

    def draw(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [decode.pick(logits, temperature=1.0, top_p=0.9, generator=generator) for _ in range(20)]

    assert draw(11) == draw(11)
    assert draw(11) != draw(12)


def utf8(ids: list[int]) -> str:
    """A byte-level detokenizer: each id is one byte, as byte-level BPE's base tokens are."""
    return bytes(ids).decode("utf-8", "replace")


def test_text_gives_a_multibyte_character_to_the_token_that_completes_it() -> None:
    text = decode.Text(utf8, stops=[])
    pieces = []
    for byte in "aé€".encode():
        text.add(byte)
        pieces.append(text.release()[1][-1][1])

    assert pieces == ["a", "", "é", "", "", "€"]
    assert text.final == "aé€"


def test_text_left_with_half_a_character_gives_it_as_the_replacement_character() -> None:
    text = decode.Text(utf8, stops=[])
    for byte in b"a\xc3":
        text.add(byte)

    text.finish()

    assert text.release(final=True) == ("a\ufffd", [(0, "a"), (1, "\ufffd")])


def test_text_holds_back_what_could_begin_a_stop_string_until_it_cannot() -> None:
    text = decode.Text(utf8, stops=["bcd"])
    released = []
    for letter in "abcx":
        text.add(ord(letter))
        released.append(text.release()[0])

    assert released == ["a", "", "", "bcx"]


def test_text_cut_at_a_stop_string_releases_nothing_of_it() -> None:
    text = decode.Text(utf8, stops=["bcd"])
    released = []
    for letter in "xabcd":
        text.add(ord(letter))
        released.append(text.release()[0])

    assert (released, text.stop_at, text.final) == (["x", "a", "", "", ""], 2, "xa")


def test_choice_tells_its_listener_as_it_goes_and_end_of_text_finishes_with_stop() -> None:
    heard: list[tuple[str, list[Any], str | None]] = []

    made = decode.choice(
        scripted([4, 5, 6, EOS])[0],
        **{**ARGS, "budget": 9, "top": 2},
        on_text=lambda text, tokens, reason: heard.append((text, tokens, reason)),
    )

    assert (made.text, made.finish_reason) == ("efg", "eos")
    assert [(text, [t.text for t in tokens], reason) for text, tokens, reason in heard] == [
        ("e", ["e"], None),
        ("f", ["f"], None),
        ("g", ["g"], None),
        ("", [], "stop"),
    ]
    assert made.tokens[0].logprob == pytest.approx(0.0)
    assert (len(made.tokens[0].top), made.tokens[0].top[0][0]) == (2, "e")


def test_a_choice_with_a_budget_of_0_runs_no_step_and_finishes_with_length() -> None:
    """An echo that only scores its prompt: nothing is decoded, the listener still hears the end."""
    step, fed = scripted([4])
    heard: list[tuple[str, list[Any], str | None]] = []

    made = decode.choice(step, **{**ARGS, "budget": 0, "top": 2}, on_text=lambda *told: heard.append(told))

    assert (fed, made.ids, made.text, made.tokens, made.finish_reason) == ([], [], "", [], "length")
    assert heard == [("", [], "length")]
