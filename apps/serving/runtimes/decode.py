"""Token-by-token decoding for torch causal LMs: our own loop, so every request owns its state.

Each request brings its own KV cache and its own seeded `torch.Generator`, so requests running
at once in the worker's thread pool neither share random state nor disturb each other's results:
a seed gives the same text whether the request ran alone or beside seven others. The sampling
parameters are exactly the request's; the model's generation_config defaults (repetition
penalties, top-k) are not applied behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from apps.serving.runtimes.base import check_deadline, first_stop

# Bytes a character takes at most in UTF-8: each token decodes to at least one byte, so this many
# tokens per stop character always cover a stop string, however the tokenizer split it.
_UTF8_MAX = 4

Step = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


@dataclass(frozen=True, slots=True)
class Decoded:
    ids: list[int]  # the tokens generated, without the end-of-text token
    text: str  # their text, cut before the first stop string
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
    detokenize: Callable[[list[int]], str],
) -> Decoded:
    """Generate up to `budget` tokens after `prompt_ids`; `step(ids, cache)` runs the model once and
    returns the last position's logits and the grown cache. Call under torch.inference_mode()."""
    window = _UTF8_MAX * max((len(s) for s in stops), default=0) + 2
    inputs = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    cache: Any = None
    ids: list[int] = []
    for done in range(budget):
        check_deadline(deadline, f"after {done} of {budget} tokens")
        logits, cache = step(inputs, cache)
        token = pick(logits, temperature=temperature, top_p=top_p, generator=generator)
        if token in eos:
            return Decoded(ids, detokenize(ids), "eos")
        ids.append(token)
        # Only the tail can hold a stop that was not there a token ago; the whole text is decoded
        # only when the tail shows one, so long generations stay linear.
        if stops and first_stop(detokenize(ids[-window:]), stops) is not None:
            text = detokenize(ids)
            cut = first_stop(text, stops)
            if cut is not None:
                return Decoded(ids, text[:cut], "stop")
        inputs = torch.tensor([[token]], dtype=torch.long, device=device)
    return Decoded(ids, detokenize(ids), "length")
