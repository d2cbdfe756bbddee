"""What the queue's tests share: a registered causal LM, a validated dataset and GPUs (the kinds'
runners are tested elsewhere; here no job is run)."""

from __future__ import annotations

from typing import Any

from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from tests.fleet.factories import GIB, DeviceFactory
from tests.jobs.factories import DatasetFactory
from tests.models.factories import ModelVersionFactory

TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "vocab_size": 1000,
    "context_length": 256,
}


def lm(**fields: Any) -> Any:
    """A valid causal LM in a Hugging Face folder, 64 wide with a 256-token context."""
    values: dict[str, Any] = {
        "format": ModelFormat.HF,
        "kind": "causal-lm",
        "validation_state": ValidationState.VALID,
        "metadata": dict(TINY),
        "params_count": 1_000_000,
        "estimated_vram_bytes": GIB,
        **fields,
    }
    return ModelVersionFactory(**values)


def served(gib: float) -> Any:
    """A valid causal LM to place, estimated at `gib` GiB."""
    return ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        validation_state=ValidationState.VALID,
        estimated_vram_bytes=int(gib * GIB),
    )


def dataset(**fields: Any) -> Any:
    return DatasetFactory(**{"state": "valid", "rows": 100, "shape": "text", **fields})


def gpu(capacity_gib: float = 24, **fields: Any) -> Any:
    return DeviceFactory(capacity_bytes=int(capacity_gib * GIB), **fields)


def fine_tune(version: Any, data: Any, **params: Any) -> dict[str, Any]:
    return {"base_version": version.pk, "dataset": data.pk, "max_steps": 10, **params}
