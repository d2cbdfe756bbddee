"""Dataset rows as token ids a causal LM learns from, and those in padded batches.

Only the completion is learned: a prompt's tokens, a chat's system and user turns and the padding
carry the label -100, which the loss skips. A chat row goes through the tokenizer's chat template
when it has one (each assistant turn learned), else through `Example.text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from apps.jobs.domain.datasets import Example, Shape
from apps.jobs.domain.failures import BadData

IGNORE = -100  # the label transformers' loss skips


@dataclass(frozen=True, slots=True)
class Encoded:
    """One row's tokens (cut to the sequence length) and what is learned of them."""

    input_ids: list[int]
    labels: list[int]  # IGNORE where not learned
    row: int = 0  # the row's number in its file

    @property
    def learned(self) -> int:
        """Tokens whose prediction counts in the loss (the first token is never predicted)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


# A row as pieces of text, each learned or not, in order.
Pieces = list[tuple[str, bool]]


def encode(examples: Iterable[Example], tokenizer: Any, *, seq_len: int, dataset: str) -> list[Encoded]:
    """Every example as token ids and labels, cut to `seq_len` tokens.

    Raises BadData naming the row when one leaves nothing to learn within `seq_len` (an empty
    completion, a prompt that fills the whole sequence).
    """
    end = tokenizer.eos_token_id
    encoded = []
    for example in examples:
        ids: list[int] = []
        labels: list[int] = []
        for text, learned in _pieces(example, tokenizer):
            piece = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []
            ids.extend(piece)
            labels.extend(piece if learned else [IGNORE] * len(piece))
        if end is not None:
            ids.append(end)  # learn where the row ends
            labels.append(end)
        row = Encoded(input_ids=ids[:seq_len], labels=labels[:seq_len], row=example.row)
        if row.learned == 0:
            why = (
                f"nothing to learn within the sequence length of {seq_len} tokens"
                if len(ids) > seq_len
                else "nothing to learn: the row encodes to no learnable tokens"
            )
            raise BadData(dataset, example.row, why)
        encoded.append(row)
    return encoded


def batches(encoded: Sequence[Encoded], *, batch_size: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """`encoded` in order, `batch_size` rows at a time (the last batch may be smaller), each padded on
    the right to its longest row: input_ids, attention_mask, labels (IGNORE on the padding)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    for start in range(0, len(encoded), batch_size):
        rows = encoded[start : start + batch_size]
        width = max(len(row.input_ids) for row in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.input_ids)
            ids[i, :n] = torch.tensor(row.input_ids, dtype=torch.long)
            labels[i, :n] = torch.tensor(row.labels, dtype=torch.long)
            mask[i, :n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _pieces(example: Example, tokenizer: Any) -> Pieces:
    if example.shape == Shape.TEXT:
        return [(example.completion, True)]
    if example.shape == Shape.PROMPT_COMPLETION:
        return [(example.prompt, False), (example.completion, True)]
    if getattr(tokenizer, "chat_template", None):
        templated = _chat_pieces(example.messages, tokenizer)
        if templated is not None:
            return templated
    return _plain_chat_pieces(example.messages)


def _chat_pieces(messages: Sequence[tuple[str, str]], tokenizer: Any) -> Pieces | None:
    """The chat rendered by the template, cut where each assistant turn starts and ends: the text
    before a turn (with the template's generation prompt) is not learned, the turn is. None when the
    template does not render a chat as a string that grows turn by turn (then the plain form is used)."""
    chat = [{"role": role, "content": content} for role, content in messages]
    pieces: Pieces = []
    done = ""
    for i, (role, _content) in enumerate(messages):
        if role != "assistant":
            continue
        prompt = _render(tokenizer, chat[:i], generation_prompt=True)
        full = _render(tokenizer, chat[: i + 1], generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            return None
        pieces += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
        done = full
    rest = _render(tokenizer, chat, generation_prompt=False)
    if not rest.startswith(done):
        return None
    pieces.append((rest[len(done) :], False))
    return [(text, learned) for text, learned in pieces if text]


def _render(tokenizer: Any, chat: list[dict[str, str]], *, generation_prompt: bool) -> str:
    if not chat:
        return ""
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=generation_prompt)
    return str(text)


def _plain_chat_pieces(messages: Sequence[tuple[str, str]]) -> Pieces:
    """`Example.text`'s lines, the assistant's learned."""
    pieces: Pieces = []
    for i, (role, content) in enumerate(messages):
        sep = "\n" if i else ""
        if role == "assistant":
            pieces += [(f"{sep}{role}: ", False), (content, True)]
        else:
            pieces.append((f"{sep}{role}: {content}", False))
    return pieces
