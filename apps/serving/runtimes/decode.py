"""Token-by-token decoding for torch causal LMs: our own loop, so every request owns its state.

Each request brings its own KV cache and its own seeded `torch.Generator`, so requests running
at once in the worker's thread pool neither share random state nor disturb each other's results:
a seed gives the same text whether the request ran alone or beside seven others. The sampling
parameters are exactly the request's; the model's generation_config defaults (repetition
penalties, top-k) are not applied behind the caller's back.

`sample` makes the tokens; `Text` turns them into text as it becomes final, for a stream: never
half a UTF-8 character (a token's text is "" until the character completes), never the start of
what may yet turn out to be a stop string (held back until it is clear); `choice` puts the two
together for one choice of a completion, and `run` is the plain generation of the Celery path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from apps.serving.domain.wire import Token, finite_logprob
from apps.serving.runtimes.base import check_deadline

Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
Detokenize = Callable[[list[int]], str]
# What a choice tells its listener as its text becomes final: (text, tokens, finish_reason).
OnText = Callable[[str, list[Token], str | None], None]
# Prompt tokens decoded before the first generated one, so a tokenizer that reads a token's
# leading space from what precedes it (sentencepiece) decodes the first one as it would in place.
_CONTEXT_TOKENS = 4
_REPLACEMENT = "\ufffd"  # what a tokenizer decodes an incomplete UTF-8 character to


@dataclass(frozen=True, slots=True)
class Decoded:
    ids: list[int]  # the tokens generated, without the end-of-text token
    text: str  # their text, cut before the first stop string
    finish_reason: str  # "length", "stop" or "eos"


@dataclass(frozen=True, slots=True)
class Picked:
    id: int
    logprob: float | None  # log-softmax of the logits at temperature 1, where asked
    top: list[tuple[int, float]] = field(default_factory=list)  # the most likely ids, where asked


@dataclass(frozen=True, slots=True)
class Choice:
    ids: list[int]  # every token generated, without the end-of-text token
    text: str  # their text, cut before the first stop string
    tokens: list[Token]  # the tokens of `text` (the last one cut at a stop), with their scores
    finish_reason: str  # "length", "stop" or "eos"


def pick(logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """The next token from one position's logits: greedy at temperature 0, else nucleus sampling."""
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        ranked, order = torch.sort(probs, descending=True)
        # Keep the most likely tokens until their mass reaches top_p; the first always stays.
        outside = torch.cumsum(ranked, dim=-1) - ranked >= top_p
        ranked = ranked.masked_fill(outside, 0.0)
        return int(order[torch.multinomial(ranked, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def scores(logprobs: torch.Tensor, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """`token`'s log-probability in one position's log-softmax, and the `top` most likely ids',
    each at least wire.LOGPROB_FLOOR (a masked row's -inf, an overflow's NaN, are not JSON)."""
    alternatives: list[tuple[int, float]] = []
    if top:
        values, ids = torch.topk(logprobs, min(top, logprobs.shape[-1]))
        alternatives = [(i, finite_logprob(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    return finite_logprob(float(logprobs[token])), alternatives


def sample(
    step: Step,
    *,
    prompt_ids: list[int],
    budget: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    device: torch.device,
    deadline: float | None,
    top: int | None = None,
    first: tuple[torch.Tensor, Any] | None = None,
) -> Iterator[Picked]:
    """Up to `budget` tokens after `prompt_ids`, one at a time (the caller stops at end-of-text;
    a budget of 0 runs the model not at all: an echo that only scores its prompt);
    `step(ids, cache)` runs the model once and returns the last position's logits and the grown
    cache; `first` is a prompt pass already run (its last logits and cache). With `top` (0 or more)
    each token carries its log-probability and the `top` most likely alternatives. Call under
    torch.inference_mode()."""
    inputs = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    cache: Any = None
    for done in range(budget):
        check_deadline(deadline, f"after {done} of {budget} tokens")
        if done == 0 and first is not None:
            logits, cache = first
        else:
            logits, cache = step(inputs, cache)
        token = pick(logits, temperature=temperature, top_p=top_p, generator=generator)
        if top is None:
            yield Picked(token, None)
        else:
            yield Picked(token, *scores(torch.log_softmax(logits.float(), dim=-1), token, top))
        inputs = torch.tensor([[token]], dtype=torch.long, device=device)


class Text:
    """The text of tokens added one at a time, handed out (`release`) only as it becomes final.

    Each token's text is what decoding the tokens so far adds to the text ("" while a UTF-8
    character is incomplete: the token that completes it carries it). Released text always ends
    at a token's end, and never includes what could still begin a stop string; once a stop string
    appears the text is cut before it and no token after the cut is released.
    """

    def __init__(self, detokenize: Detokenize, *, stops: list[str], context: list[int] | None = None) -> None:
        self._detokenize = detokenize
        self._stops = stops
        self._ids = list(context or [])
        self._prefix = 0  # decoding starts here (context for the first new token)
        self._read = len(self._ids)  # ... and what is before here is already text
        self.text = ""
        self.stop_at: int | None = None  # where the first stop string begins in `text`
        self._spans: list[tuple[int, int]] = []  # each token's [start, end) in `text`
        self._released = 0  # characters of `text` handed out
        self._given = 0  # tokens handed out

    def add(self, token: int) -> None:
        self._ids.append(token)
        before = self._detokenize(self._ids[self._prefix : self._read])
        now = self._detokenize(self._ids[self._prefix :])
        start = len(self.text)
        if len(now) > len(before) and not now.endswith(_REPLACEMENT):
            self.text += now[len(before) :]
            self._prefix, self._read = self._read, len(self._ids)
        self._spans.append((start, len(self.text)))
        if self._stops and self.stop_at is None:
            # A stop can only begin where nothing has been released: what could begin one is held.
            found = [at for at in (self.text.find(s, self._released) for s in self._stops) if at >= 0]
            self.stop_at = min(found) if found else None

    def finish(self) -> None:
        """No more tokens: an incomplete character left at the end is decoded as it stands (U+FFFD)."""
        if self._read < len(self._ids) and self._spans:
            before = self._detokenize(self._ids[self._prefix : self._read])
            self.text += self._detokenize(self._ids[self._prefix :])[len(before) :]
            start, _ = self._spans[-1]
            self._spans[-1] = (start, len(self.text))
            self._prefix = self._read = len(self._ids)

    @property
    def final(self) -> str:
        return self.text if self.stop_at is None else self.text[: self.stop_at]

    def release(self, *, final: bool = False) -> tuple[str, list[tuple[int, str]]]:
        """The text that became final since the last call, and its tokens as (index, text);
        `final` hands out all that is left (after `finish`)."""
        given: list[tuple[int, str]] = []
        if self.stop_at is not None:
            end = self.stop_at
            while self._given < len(self._spans) and self._spans[self._given][0] < end:
                start, stop = self._spans[self._given]
                given.append((self._given, self.text[start : min(stop, end)]))
                self._given += 1
            self._given = len(self._spans)  # what follows the cut is never handed out
        else:
            limit = len(self.text) if final else len(self.text) - self._held()
            end = self._released
            while self._given < len(self._spans) and self._spans[self._given][1] <= limit:
                start, end = self._spans[self._given]
                given.append((self._given, self.text[start:end]))
                self._given += 1
        released, self._released = self.text[self._released : end], max(self._released, end)
        return released, given

    def _held(self) -> int:
        """How many characters at the end of the text could begin a stop string."""
        held = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self.text)), held, -1):
                if self.text.endswith(stop[:size]):
                    held = size
                    break
        return held


def choice(
    step: Step,
    *,
    prompt_ids: list[int],
    budget: int,
    eos: frozenset[int],
    stops: list[str],
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    device: torch.device,
    deadline: float | None,
    detokenize: Detokenize,
    top: int | None = None,
    first: tuple[torch.Tensor, Any] | None = None,
    on_text: OnText | None = None,
) -> Choice:
    """One choice of a completion: `sample`'s tokens made into text by `Text`, told to `on_text`
    as it becomes final (the last call carries the finish reason). Call under torch.inference_mode()."""
    text = Text(detokenize, stops=stops, context=prompt_ids[-_CONTEXT_TOKENS:])
    picked: list[Picked] = []
    tokens: list[Token] = []
    finish = "length"

    def told(final: bool, reason: str | None) -> None:
        released, given = text.release(final=final)
        new = [_token(picked[i], piece, detokenize) for i, piece in given]
        tokens.extend(new)
        if on_text is not None and (released or new or reason):
            on_text(released, new, reason)

    tokens_of = sample(
        step,
        prompt_ids=prompt_ids,
        budget=budget,
        temperature=temperature,
        top_p=top_p,
        generator=generator,
        device=device,
        deadline=deadline,
        top=top,
        first=first,
    )
    for token in tokens_of:
        if token.id in eos:
            finish = "eos"
            break
        picked.append(token)
        text.add(token.id)
        if text.stop_at is not None:
            finish = "stop"
            break
        told(False, None)
    text.finish()
    told(True, "stop" if finish == "eos" else finish)
    return Choice([p.id for p in picked], text.final, tokens, finish)


def _token(picked: Picked, text: str, detokenize: Detokenize) -> Token:
    top = [(detokenize([i]), lp) for i, lp in picked.top]
    return Token(text=text, id=picked.id, logprob=picked.logprob, top=top)


def run(
    step: Step,
    *,
    prompt_ids: list[int],
    budget: int,
    eos: frozenset[int],
    stops: list[str],
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    device: torch.device,
    deadline: float | None,
    detokenize: Detokenize,
) -> Decoded:
    """Generate up to `budget` tokens after `prompt_ids`; `step(ids, cache)` runs the model once and
    returns the last position's logits and the grown cache. Call under torch.inference_mode()."""
    made = choice(
        step,
        prompt_ids=prompt_ids,
        budget=budget,
        eos=eos,
        stops=stops,
        temperature=temperature,
        top_p=top_p,
        generator=generator,
        device=device,
        deadline=deadline,
        detokenize=detokenize,
    )
    return Decoded(made.ids, made.text, made.finish_reason)
