"""What a device job reserves: domain.memory's one figure per kind (a LoRA fine-tune's counts the
adapter it adds), at the batch an out-of-memory adjustment left, and `memory_bytes` as a floor only an
admin may go below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.jobs import services
from apps.jobs.domain import memory
from apps.jobs.domain.params import Method
from apps.jobs.models import Job
from apps.jobs.services.facts import shape_of
from tests.fleet.factories import GIB
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def reserved(job: Job) -> int:
    services.jobs_dispatch(now=timezone.now())
    job.refresh_from_db()
    return job.reserved_bytes


def test_fine_tune_bytes_of_lora_hold_the_base_and_its_adapter_and_train_only_the_adapter() -> None:
    base = memory.Shape(params=1_000_000, hidden=64, layers=2, vocab=1000)
    adapter = memory.lora_trainable(base, rank=8)
    with_adapter = memory.Shape(params=1_000_000 + adapter, hidden=64, layers=2, vocab=1000)

    lora = memory.fine_tune_bytes(base, method="lora", lora_rank=8, batch=4, seq_len=64)
    full = memory.fine_tune_bytes(base, method="full", lora_rank=8, batch=4, seq_len=64)

    assert lora == memory.training_bytes(with_adapter, trainable=adapter, batch=4, seq_len=64)
    assert full == memory.training_bytes(base, trainable=base.params, batch=4, seq_len=64)
    assert lora > memory.training_bytes(base, trainable=adapter, batch=4, seq_len=64)  # the adapter's weights


def test_a_lora_fine_tune_reserves_exactly_what_a_step_at_its_batch_needs() -> None:
    gpu(24)
    version = lm()
    job = services.job_create(
        kind="fine_tune", params=fine_tune(version, dataset(), method="lora", lora_rank=8, batch_size=4)
    )
    shape = shape_of(version)
    assert shape is not None

    assert reserved(job) == memory.fine_tune_bytes(
        shape, method=Method.LORA, lora_rank=8, batch=4, seq_len=128
    )


def test_a_fine_tune_that_halved_its_batch_reserves_at_the_smaller_batch_when_it_waits_again() -> None:
    gpu(24)
    version = lm()
    job = services.job_create(kind="fine_tune", params=fine_tune(version, dataset(), batch_size=8))
    Job.objects.filter(pk=job.pk).update(adjustments={"batch_size": 2, "grad_accum": 4, "out_of_memory": []})
    shape = shape_of(version)
    assert shape is not None

    at_two = memory.fine_tune_bytes(shape, method="full", lora_rank=8, batch=2, seq_len=128)
    assert reserved(job) == at_two
    assert at_two < memory.fine_tune_bytes(shape, method="full", lora_rank=8, batch=8, seq_len=128)


def test_memory_bytes_above_the_estimate_is_reserved(operator: Any) -> None:
    gpu(24)

    job = services.job_create(
        kind="evaluate",
        params={"version": lm().pk, "dataset": dataset().pk, "memory_bytes": 2 * GIB},
        created_by=operator,
    )

    assert reserved(job) == 2 * GIB


def test_memory_bytes_below_the_estimate_is_refused_to_an_operator_naming_it_and_the_estimate(
    operator: Any,
) -> None:
    gpu(24)
    version = lm()
    shape = shape_of(version)
    assert shape is not None
    estimate = memory.fine_tune_bytes(shape, method="full", lora_rank=8, batch=8, seq_len=128)

    with pytest.raises(ValidationError) as refused:
        services.job_create(
            kind="fine_tune", params=fine_tune(version, dataset(), memory_bytes=1), created_by=operator
        )

    [line] = refused.value.message_dict["params"]
    assert line.startswith("memory_bytes: 1 B is below MOC's estimate")
    assert f"({estimate:,} bytes)" in line
    assert not Job.objects.exists()


def test_an_admin_may_reserve_below_the_estimate(admin_user_role: Any) -> None:
    gpu(24)

    job = services.job_create(
        kind="fine_tune",
        params=fine_tune(lm(), dataset(), memory_bytes=1024),
        created_by=admin_user_role,
    )

    assert reserved(job) == 1024


def test_an_admin_key_acting_as_operator_may_not(admin_user_role: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        services.job_create(
            kind="fine_tune",
            params=fine_tune(lm(), dataset(), memory_bytes=1024),
            created_by=admin_user_role,
            acting_role=Role.OPERATOR,
        )

    assert refused.value.message_dict["params"][0].startswith("memory_bytes: ")


def test_the_api_answers_400_naming_memory_bytes(client_as: Client) -> None:
    gpu(24)

    response = client_as(Role.OPERATOR).post(
        "/api/v1/jobs/",
        {"kind": "fine_tune", "params": fine_tune(lm(), dataset(), memory_bytes=1)},
        format="json",
    )

    assert response.status_code == 400
    [line] = response.json()["fields"]["params"]
    assert line.startswith("memory_bytes: ")


@pytest.fixture
def admin_user_role(make_user: Callable[..., object]) -> object:
    return make_user(Role.ADMIN, "the-admin")
