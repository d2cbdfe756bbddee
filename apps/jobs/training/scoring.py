"""A causal LM's mean loss over encoded rows: what a fine-tune reports as eval_loss, and what an
evaluation reports (with its perplexity, exp(loss))."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from apps.jobs.training.data import IGNORE, Encoded, batches


@dataclass(frozen=True, slots=True)
class Scored:
    """The mean next-token loss per learned token (None when the rows hold none) and how many
    learned tokens it is the mean of."""

    loss: float | None
    tokens: int


@torch.no_grad()
def mean_loss(
    model: Any,
    rows: Sequence[Encoded],
    *,
    batch_size: int,
    pad_id: int,
    device: str,
    on_batch: Callable[[int], None] | None = None,
) -> Scored:
    """The loss over `rows`, summed across batches and divided once, so batches of different sizes
    weigh by their tokens (the model put in eval mode for it and back as it was after).
    `on_batch(tokens)` is told after each batch how many tokens (prompt and all) it held."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches(rows, batch_size=batch_size, pad_id=pad_id):
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            labels = batch["labels"].to(device)[:, 1:]
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                labels.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total += float(loss)
            count += int((labels != IGNORE).sum())
            if on_batch is not None:
                on_batch(int(mask.sum()))
    finally:
        model.train(was_training)
    return Scored(total / count if count else None, count)
