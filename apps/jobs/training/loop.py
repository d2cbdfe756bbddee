"""The fine-tune's training loop: AdamW with a linear schedule, gradient accumulation, an evaluation
every `eval_interval` steps, a checkpoint every `checkpoint_interval` steps and before any stop that
asks for one. A stop is looked for after each step and between the batches of every evaluation (the
one before the first step, those on the interval, the one after the last step), so a cancel lands
within a step or an evaluation batch. A run that starts (again) at step S first deletes the job's
metric points past S, so a replayed step has one point, not two.

A plain torch loop rather than transformers' Trainer: on the demo model Trainer ran about a fifth
slower than a bare loop (bench/finetune_overhead.py prints all three), over the issue's 5% bound, and the
loop is what MOC needs anyway (report each step, stop between steps, resume at a global step with
another batch size).

The data is one endless stream of row indices, each epoch a seeded permutation of the training rows;
the examples consumed so far are kept in each checkpoint, so a resumed run (with half the batch and
twice the accumulation after an out-of-memory) reads exactly the rows the first run would have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NoReturn

import torch
from django.conf import settings

from apps.core.domain.units import format_bytes
from apps.jobs.domain import memory
from apps.jobs.domain.failures import OutOfMemory
from apps.jobs.domain.params import FineTuneParams
from apps.jobs.reporting import Report, Stop
from apps.jobs.training import checkpoints
from apps.jobs.training.checkpoints import Checkpoint
from apps.jobs.training.data import Encoded, batches
from apps.jobs.training.loading import LoadedLM
from apps.jobs.training.scoring import mean_loss


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run of a fine-tune trains, and how."""

    job_id: int
    params: FineTuneParams
    total_steps: int
    batch_size: int  # rows per forward pass (halved after an out-of-memory)
    grad_accum: int  # forward passes per optimiser step (doubled with it)
    device: str  # torch's name for it
    # A simulated GPU has no allocator to run out: each step's estimate is checked against the bytes
    # the job holds on it instead (0: no check). `simulated` names the device for the message.
    memory_limit: int = 0
    simulated: str = ""
    # The base model's shape as the dispatcher reserved for it (the registry's); None: the loaded
    # model's, less any adapter. domain.memory.fine_tune_bytes makes both sides agree to the byte.
    base_shape: memory.Shape | None = None


@dataclass
class Trained:
    """What a run did: the model as trained, and its figures."""

    lm: LoadedLM
    steps: int  # the global step reached
    tokens: int  # tokens trained on in this run
    seconds: float  # this run's training time
    train_loss: float | None
    eval_loss_before: float | None
    eval_loss: float | None
    resumed_from: int | None
    examples: int = 0


class Order:
    """Row indices in training order: epoch after epoch, each a permutation seeded by (seed, epoch)."""

    def __init__(self, rows: int, seed: int) -> None:
        self.rows, self.seed = rows, seed
        self._epochs: dict[int, list[int]] = {}

    def take(self, start: int, count: int) -> list[int]:
        return [self._epoch(i // self.rows)[i % self.rows] for i in range(start, start + count)]

    def _epoch(self, epoch: int) -> list[int]:
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epochs = {epoch: torch.randperm(self.rows, generator=generator).tolist()}
        return self._epochs[epoch]


def train(
    plan: Plan,
    lm: LoadedLM,
    *,
    train_rows: list[Encoded],
    eval_rows: list[Encoded],
    report: Report,
    resume: Checkpoint | None,
) -> Trained:
    """Train `lm` (loaded from `resume`'s model when resuming) up to plan.total_steps."""
    params = plan.params
    model, pad_id = lm.model, lm.tokenizer.pad_token_id
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.learning_rate)
    total = plan.total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total))

    def save(reason: str) -> None:
        report.ensure_running()  # a runner that lost its job leaves its folder to the one that has it
        state = {
            "examples": consumed,
            "batch_size": plan.batch_size,
            "grad_accum": plan.grad_accum,
            "total_steps": total,
            "eval_loss_before": before,
            "method": params.method.value,
            "reason": reason,
        }
        saved = checkpoints.save(
            job_id=plan.job_id,
            step=step,
            model=model,
            tokenizer=lm.tokenizer,
            optimizer=optimizer,
            scheduler=scheduler,
            state=state,
        )
        report.checkpoint_saved(step=step, path=str(saved.path), size_bytes=saved.size_bytes, reason=reason)
        pruned = checkpoints.prune(plan.job_id, keep=settings.MOC_CHECKPOINT_KEEP)
        if pruned:
            report.checkpoints_pruned(steps=pruned)

    def stop(asked: Stop) -> NoReturn:
        """Checkpoint where the stop asks for it (not before the first step: nothing to keep), then stop."""
        if asked.save and step > 0:
            save(asked.reason)
        report.stop_now(asked)

    def stop_if_asked(_tokens: int) -> None:
        """Between the batches of an evaluation (a pass over the whole eval split can be long)."""
        asked = report.stop_asked()
        if asked is not None:
            stop(asked)

    def evaluate() -> float | None:
        return mean_loss(
            model,
            eval_rows,
            batch_size=plan.batch_size,
            pad_id=pad_id,
            device=plan.device,
            on_batch=stop_if_asked,
        ).loss

    before: float | None
    if resume is not None:
        checkpoints.restore(resume, optimizer=optimizer, scheduler=scheduler)
        step, consumed = resume.step, int(resume.state["examples"])
        before = resume.state.get("eval_loss_before")
        report.rewind(step=step)
    else:
        step, consumed = 0, 0
        report.rewind(step=0)
        before = evaluate()
        if before is not None:
            report.metrics(step=0, values={"eval_loss": before})

    order = Order(len(train_rows), params.seed)
    shape = plan.base_shape or lm.base_shape()
    model.train()
    tokens, train_loss = 0, None
    started = time.perf_counter()
    while step < total:
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=plan.device)
        step_tokens = 0
        for _ in range(plan.grad_accum):
            rows = [train_rows[i] for i in order.take(consumed, plan.batch_size)]
            _check_fits(plan, shape, batch=len(rows))
            batch = {
                k: v.to(plan.device)
                for k, v in next(batches(rows, batch_size=len(rows), pad_id=pad_id)).items()
            }
            loss = model(**batch).loss
            (loss / plan.grad_accum).backward()
            step_loss += loss.detach()
            consumed += len(rows)
            step_tokens += int(batch["attention_mask"].sum())
        optimizer.step()
        scheduler.step()
        step += 1
        tokens += step_tokens
        train_loss = float(step_loss) / plan.grad_accum
        asked = report.step(
            step=step,
            total=total,
            tokens=step_tokens,
            metrics={"train_loss": train_loss, "learning_rate": float(scheduler.get_last_lr()[0])},
            memory_bytes=_memory_bytes(plan, shape),
            message=f"step {step} of {total}, loss {train_loss:.3f}",
        )
        if asked is not None:
            stop(asked)
        if params.eval_interval and step % params.eval_interval == 0 and step < total:
            eval_loss = evaluate()
            if eval_loss is not None:
                report.metrics(step=step, values={"eval_loss": eval_loss})
        if params.checkpoint_interval and step % params.checkpoint_interval == 0 and step < total:
            save("interval")
    seconds = time.perf_counter() - started
    after = evaluate()
    if after is not None:
        report.metrics(step=step, values={"eval_loss": after})
    return Trained(
        lm=lm,
        steps=step,
        tokens=tokens,
        seconds=seconds,
        train_loss=train_loss,
        eval_loss_before=before,
        eval_loss=after,
        resumed_from=resume.step if resume else None,
        examples=consumed,
    )


def _check_fits(plan: Plan, base: memory.Shape, *, batch: int) -> None:
    """On a simulated GPU, what a real one's allocator would say: out of memory when the step's
    estimate exceeds what the job holds (the same estimate the dispatcher reserved with)."""
    if not plan.memory_limit:
        return
    need = _step_bytes(plan, base, batch=batch)
    if need > plan.memory_limit:
        raise OutOfMemory(
            f"simulated device {plan.simulated}: the step needs {format_bytes(need)} (batch {batch} of"
            f" {plan.params.seq_len} tokens), the job holds {format_bytes(plan.memory_limit)}"
        )


def _memory_bytes(plan: Plan, base: memory.Shape) -> int:
    if plan.device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(plan.device))
    return _step_bytes(plan, base, batch=plan.batch_size)


def _step_bytes(plan: Plan, base: memory.Shape, *, batch: int) -> int:
    params = plan.params
    return memory.fine_tune_bytes(
        base, method=params.method.value, lora_rank=params.lora_rank, batch=batch, seq_len=params.seq_len
    )
