"""Checkpoints on disk: a folder without its COMPLETE marker is never loaded, the last K are kept,
a retry finds its own checkpoints first and then its retry_of chain's, and a restore puts the
optimiser and the schedule back as they were."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from apps.jobs.training import checkpoints
from apps.jobs.training.loading import LoadedLM, load_causal_lm


@pytest.fixture
def lm(demo_models: Path, settings: Any, tmp_path: Path) -> LoadedLM:
    settings.MOC_CHECKPOINT_ROOT = str(tmp_path / "checkpoints")
    return load_causal_lm(path=str(demo_models / "demo-gpt2"), device="cpu", trainable=True)


def _optimiser(lm: LoadedLM) -> tuple[torch.optim.Optimizer, Any]:
    optimizer = torch.optim.AdamW(lm.model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / 10)
    return optimizer, scheduler


def _save(lm: LoadedLM, job_id: int, step: int, **state: Any) -> checkpoints.Checkpoint:
    optimizer, scheduler = _optimiser(lm)
    return checkpoints.save(
        job_id=job_id,
        step=step,
        model=lm.model,
        tokenizer=lm.tokenizer,
        optimizer=optimizer,
        scheduler=scheduler,
        state={"examples": step * 4, **state},
    )


def test_a_checkpoint_is_laid_out_as_the_contract_says_with_its_marker(lm: LoadedLM) -> None:
    saved = _save(lm, 7, 3)

    assert saved.path == Path(checkpoints.root()) / "job-7" / "step-00000003"
    assert {p.name for p in saved.path.iterdir()} == {"model", "optimizer.pt", "state.json", "COMPLETE"}
    assert (saved.model_path / "model.safetensors").is_file()
    assert saved.state == {"examples": 12, "step": 3, "job": 7}
    assert not list(saved.path.parent.glob("*.tmp-*"))
    assert checkpoints.latest_complete([7]) == saved
    assert load_causal_lm(path=str(saved.model_path), device="cpu").model is not None


def test_a_folder_without_its_complete_marker_is_never_loaded(lm: LoadedLM) -> None:
    good = _save(lm, 7, 2)
    half = good.path.with_name("step-00000004")
    shutil.copytree(good.path, half)
    (half / "COMPLETE").unlink()
    staged = good.path.with_name("step-00000006.tmp-999")
    shutil.copytree(good.path, staged)  # even with its marker: never renamed into place

    assert [c.step for c in checkpoints.complete(7)] == [2]
    assert checkpoints.latest_complete([7]).step == 2


def test_a_new_checkpoint_replaces_a_half_written_folder_of_its_step(lm: LoadedLM) -> None:
    half = Path(checkpoints.job_folder(7)) / "step-00000004"
    half.mkdir(parents=True)
    (half / "junk").write_text("cut short")

    saved = _save(lm, 7, 4)

    assert (saved.path / "COMPLETE").is_file()
    assert not (saved.path / "junk").exists()


def test_pruning_keeps_the_last_k_complete_checkpoints(lm: LoadedLM) -> None:
    for step in (2, 4, 6, 8):
        _save(lm, 7, step)

    dropped = checkpoints.prune(7, keep=2)

    assert dropped == [2, 4]
    assert [c.step for c in checkpoints.complete(7)] == [6, 8]
    assert sorted(p.name for p in checkpoints.job_folder(7).iterdir()) == ["step-00000006", "step-00000008"]


def test_the_folders_of_writes_cut_short_are_removed_by_the_next_save_and_by_prune(lm: LoadedLM) -> None:
    folder = Path(checkpoints.job_folder(7))
    (folder / "step-00000002.tmp-4242" / "model").mkdir(parents=True)  # a worker killed mid-write

    _save(lm, 7, 4)

    assert sorted(p.name for p in folder.iterdir()) == ["step-00000004"]
    (folder / "step-00000006.tmp-4343").mkdir()

    checkpoints.prune(7, keep=2)

    assert sorted(p.name for p in folder.iterdir()) == ["step-00000004"]


def test_remove_deletes_the_jobs_whole_checkpoint_folder(lm: LoadedLM) -> None:
    _save(lm, 7, 2)
    (Path(checkpoints.job_folder(7)) / "step-00000004.tmp-4242").mkdir()
    _save(lm, 8, 2)

    assert checkpoints.remove(7) is True

    assert not checkpoints.job_folder(7).exists()
    assert checkpoints.remove(7) is False
    assert [c.step for c in checkpoints.complete(8)] == [2]


def test_a_retry_resumes_from_its_own_checkpoints_first_then_its_chain(lm: LoadedLM) -> None:
    _save(lm, 1, 4)
    _save(lm, 1, 6)
    _save(lm, 2, 2)

    assert checkpoints.latest_complete([3, 2, 1]).job_id == 2
    assert checkpoints.latest_complete([3, 1]).step == 6
    assert checkpoints.latest_complete([3]) is None


def test_restore_puts_the_optimiser_the_schedule_and_the_rng_back(lm: LoadedLM) -> None:
    optimizer, scheduler = _optimiser(lm)
    ids = torch.tensor([[1, 2, 3, 4]])
    for _ in range(3):
        lm.model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        scheduler.step()
    torch.manual_seed(42)
    saved = checkpoints.save(
        job_id=7,
        step=3,
        model=lm.model,
        tokenizer=lm.tokenizer,
        optimizer=optimizer,
        scheduler=scheduler,
        state={},
    )
    expected = torch.rand(3)
    fresh, fresh_schedule = _optimiser(lm)

    checkpoints.restore(saved, optimizer=fresh, scheduler=fresh_schedule)

    assert fresh_schedule.last_epoch == 3
    assert fresh_schedule.get_last_lr() == scheduler.get_last_lr()
    state, fresh_state = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert torch.equal(state[0]["exp_avg"], fresh_state[0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected)
