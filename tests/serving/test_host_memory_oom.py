"""Weights the host cannot hold are an out-of-memory refusal: said before the load when the size is
known, and classified so when a runtime finds out by its mmap failing. A measured figure is never
recorded below the weights the registry read."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import psutil
import pytest
from safetensors import SafetensorError

from apps.core.domain.units import format_bytes
from apps.fleet.domain.kinds import Backend
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import runtimes
from apps.serving.domain import load_guard
from apps.serving.domain.errors import ErrorClass, classify
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from apps.serving.runtimes.base import serving_error
from apps.serving.worker import device as serving_device
from apps.serving.worker import loading
from apps.serving.worker.residents import RESIDENTS
from tests.fleet.factories import GIB, DeviceFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

P = PlacementState

# What torch's MapAllocator says when the kernel will not map a file larger than the host can back
# (seen here mapping a 64 GiB sparse file on a 23 GiB host, vm.overcommit_memory=0).
MMAP_ENOMEM = (
    "unable to mmap 68719476736 bytes from file </srv/models/big/model.safetensors>:"
    " Cannot allocate memory (12)"
)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(MMAP_ENOMEM),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
        OSError(errno.ENOMEM, "mmap failed"),
    ],
)
def test_an_mmap_the_host_cannot_back_is_out_of_memory_not_a_corrupt_file(exc: Exception) -> None:
    assert classify(exc) == ErrorClass.OUT_OF_MEMORY
    assert classify(serving_error(exc, subject="loading big")) == ErrorClass.OUT_OF_MEMORY


def test_a_safetensors_error_that_is_not_about_memory_is_still_a_corrupt_file() -> None:
    exc = RuntimeError(
        "unable to mmap 8 bytes from file </srv/models/big/model.safetensors>: Invalid argument (22)"
    )

    assert classify(serving_error(exc, subject="loading big")) == ErrorClass.CORRUPT_FILE


def test_weights_beyond_the_hosts_available_memory_fall_short_whatever_the_reservation() -> None:
    why = load_guard.host_shortfall(20 * GIB, reserved_bytes=7_300_000, weights_bytes=64 * GIB)

    assert why == (
        "its weights are 64.0 GiB on disk, more than the 20.0 GiB of memory the host has available;"
        " the device keeps its weights in host memory"
    )
    assert load_guard.host_shortfall(20 * GIB, reserved_bytes=7_300_000, weights_bytes=19 * GIB) is None


@pytest.fixture
def host_memory_device(monkeypatch: pytest.MonkeyPatch, dispatched: list) -> Any:
    """A simulated GPU this process serves: its models live in this machine's RAM."""
    device = DeviceFactory(node__backend=Backend.SIM, simulated=True, capacity_bytes=2**50)
    monkeypatch.setattr(serving_device, "_device_id", device.pk)
    yield device
    for pk in RESIDENTS.ids():
        RESIDENTS.remove(pk, drain_s=0)


def sparse_model(folder: Path, size: int) -> Path:
    """A Hugging Face folder whose weights file is `size` bytes on disk, of which none is written."""
    folder.mkdir()
    weights = folder / "model.safetensors"
    with open(weights, "wb") as handle:
        handle.truncate(size)
    return folder


@pytest.mark.django_db
def test_weights_larger_than_the_hosts_available_memory_are_refused_before_the_load_opens_them(
    host_memory_device: Any, tmp_path: Path
) -> None:
    # given: weights twice the host's RAM (sparse: no disk), reserved at a figure measured elsewhere
    size = 2 * psutil.virtual_memory().total
    version = ModelVersionFactory(
        path=str(sparse_model(tmp_path / "big", size)),
        format=ModelFormat.HF,
        kind="causal-lm",
        size_bytes=size,
        estimated_vram_bytes=size + GIB,
        vram_estimate={"weights": size, "total": size + GIB},
        validation_state=ValidationState.VALID,
    )
    placement = PlacementFactory(
        version=version, device=host_memory_device, state=P.REQUESTED, reserved_bytes=7_300_000
    )

    # when: the worker loads it, with the real runtimes (which would call the folder corrupt: no
    # config.json)
    loading.load(placement.pk, attempt=0)

    # then
    placement.refresh_from_db()
    assert (placement.state, placement.error_class) == (P.FAILED, ErrorClass.OUT_OF_MEMORY)
    assert re.fullmatch(
        rf"its weights are {re.escape(format_bytes(size))} on disk, more than the \d+\.\d [KMGT]iB of memory"
        " the host has available; the device keeps its weights in host memory",
        placement.error,
    ), placement.error
    assert RESIDENTS.get(placement.pk) is None


class Loaded:
    """What a runtime hands back, as far as the worker looks at it: a load that measured 7.3 MB."""

    runtime = "test"
    tasks = frozenset({"generate"})
    measured_bytes = 7_300_000
    load_seconds = 0.05
    device = "cpu"

    def close(self) -> runtimes.Unloaded:
        return runtimes.Unloaded(freed_bytes=0, verified=True, detail="")


@pytest.mark.django_db
def test_a_load_is_recorded_at_no_less_than_the_weights_the_registry_read(
    host_memory_device: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtimes, "load", lambda spec: Loaded())
    version = ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        estimated_vram_bytes=2 * GIB,
        vram_estimate={"weights": GIB, "total": 2 * GIB},
        validation_state=ValidationState.VALID,
    )
    placement = PlacementFactory(
        version=version, device=host_memory_device, state=P.REQUESTED, reserved_bytes=GIB
    )

    loading.load(placement.pk, attempt=0)

    assert Placement.objects.get(pk=placement.pk).measured_bytes == GIB


def test_an_error_that_only_names_a_safetensors_file_is_not_taken_for_a_damaged_file() -> None:
    exc = RuntimeError("worker stopped while reading </srv/models/big/model.safetensors>")
    assert serving_error(exc, subject="loading x").error_class == ErrorClass.INTERNAL


def test_the_safetensors_library_s_own_error_is_a_corrupt_file() -> None:
    exc = SafetensorError("Error while deserializing header: HeaderTooSmall")
    assert serving_error(exc, subject="loading x").error_class == ErrorClass.CORRUPT_FILE
