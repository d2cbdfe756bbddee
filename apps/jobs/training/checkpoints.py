"""A fine-tune's checkpoints on disk: written so that a half-written one is never loaded.

Layout, under MOC_CHECKPOINT_ROOT::

    job-<id>/step-<NNNNNNNN>/
        model/          the model (save_pretrained: the whole model, or only the adapter for LoRA)
                        and the tokenizer
        optimizer.pt    the optimiser's and the LR schedule's state, torch's RNG states
        state.json      the step, the examples consumed, the batch and accumulation it ran with, ...
        COMPLETE        written last

A checkpoint is written into `step-N.tmp-<pid>`, its COMPLETE marker last (itself written to a
temporary name and renamed), and only then is the folder renamed to `step-N`. A folder without the
marker (a crash mid-write, a copy in progress) is never loaded, whatever its name. The `.pt` file is
read back with torch's weights-only unpickler: it holds tensors and numbers only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from django.conf import settings

COMPLETE = "COMPLETE"
STATE = "state.json"
TRAINING_STATE = "optimizer.pt"
MODEL = "model"
_STEP_NAME = re.compile(r"^step-(\d{8})$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A complete checkpoint of job `job_id` at optimiser step `step`."""

    job_id: int
    step: int
    path: Path
    state: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def size_bytes(self) -> int:
        return folder_bytes(self.path)


def root() -> Path:
    return Path(settings.MOC_CHECKPOINT_ROOT)


def job_folder(job_id: int) -> Path:
    return root() / f"job-{job_id}"


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def complete(job_id: int) -> list[Checkpoint]:
    """The job's complete checkpoints, oldest step first."""
    folder = job_folder(job_id)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_NAME.match(path.name)
        if match and path.is_dir() and (path / COMPLETE).is_file():
            state = _read_state(path)
            if state is not None:
                found.append(Checkpoint(job_id=job_id, step=int(match.group(1)), path=path, state=state))
    return sorted(found, key=lambda c: c.step)


def latest_complete(job_ids: Sequence[int]) -> Checkpoint | None:
    """The latest complete checkpoint of the first of `job_ids` that has one (a retry passes its own
    id first, then its retry_of chain)."""
    for job_id in job_ids:
        found = complete(job_id)
        if found:
            return found[-1]
    return None


def save(
    *,
    job_id: int,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
) -> Checkpoint:
    """Write a checkpoint at `step` (the model's save_pretrained writes only the adapter of a peft
    model) and return it once complete. A complete one already at `step` is kept as it is."""
    folder = job_folder(job_id)
    final = folder / step_name(step)
    if (final / COMPLETE).is_file():
        existing = _read_state(final)
        if existing is not None:
            return Checkpoint(job_id=job_id, step=step, path=final, state=existing)
    _drop_partial(folder)
    tmp = folder / f"{step_name(step)}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp / MODEL, safe_serialization=True)
        tokenizer.save_pretrained(tmp / MODEL)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            tmp / TRAINING_STATE,
        )
        state = {**state, "step": step, "job": job_id}
        _write_atomically(tmp / STATE, json.dumps(state, indent=1))
        _write_atomically(tmp / COMPLETE, f"step {step}\n")
        if final.exists():
            shutil.rmtree(final)  # an incomplete folder of that name: never loaded, so nothing lost
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Checkpoint(job_id=job_id, step=step, path=final, state=state)


def restore(checkpoint: Checkpoint, *, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Put the optimiser, the LR schedule and torch's RNG back as they were at the checkpoint (the
    model is loaded from `checkpoint.model_path` by the caller)."""
    saved = torch.load(checkpoint.path / TRAINING_STATE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])


def prune(job_id: int, *, keep: int) -> list[int]:
    """Delete all but the last `keep` complete checkpoints of the job, and any write cut short; the
    steps deleted."""
    _drop_partial(job_folder(job_id))
    found = complete(job_id)
    dropped = []
    for checkpoint in found[: max(0, len(found) - keep)]:
        _delete(checkpoint.path)
        dropped.append(checkpoint.step)
    return dropped


def remove(job_id: int) -> bool:
    """Delete the job's checkpoint folder, every checkpoint in it (complete or not); whether there
    was one. Each marker goes first, so a delete cut short leaves nothing that would be loaded."""
    folder = job_folder(job_id)
    if not folder.is_dir():
        return False
    for checkpoint in complete(job_id):
        (checkpoint.path / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    return True


def _delete(path: Path) -> None:
    # The marker goes first: a delete cut short leaves a folder that is never loaded.
    (path / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _drop_partial(folder: Path) -> None:
    """Delete the `step-N.tmp-<pid>` folders of writes cut short (a crash, a kill): never loaded,
    and a later run, with another pid, would otherwise never remove them. Only the task that runs
    the job writes in its folder (the runner asks first), so none of them is being written now."""
    if folder.is_dir():
        for path in folder.glob("step-*.tmp-*"):
            shutil.rmtree(path, ignore_errors=True)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
