"""job_create for the device kinds: parameters checked against what they name, the rows they name
linked, refusals with the scheduler's reason, and waiting for the dispatcher."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.core.domain.roles import Role
from apps.jobs import messages, services
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.serving import placing
from tests.fleet.factories import GIB
from tests.jobs.queue.conftest import dataset, fine_tune, gpu, lm

pytestmark = pytest.mark.django_db


def test_a_fine_tune_waits_for_the_dispatcher_linked_to_its_base_and_dataset(
    dispatched: list, django_capture_on_commit_callbacks: Any
) -> None:
    gpu(24)
    version, data = lm(), dataset()

    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind="fine_tune", params=fine_tune(version, data))

    assert (job.state, job.task_id, job.reserved_bytes) == (JobState.QUEUED, "", 0)
    assert (job.model_version, job.dataset) == (version, data)
    assert (job.params["batch_size"], job.params["method"]) == (8, "full")  # the defaults, stored
    assert [name for name, _, _ in dispatched] == [messages.JOBS_DISPATCH]


def test_an_evaluation_links_the_version_it_scores() -> None:
    gpu(24)
    version = lm()

    job = services.job_create(kind="evaluate", params={"version": version.pk, "golden": [["2+2=", "4"]]})

    assert (job.model_version, job.dataset) == (version, None)


def test_an_archived_dataset_is_refused_naming_the_parameter() -> None:
    gpu(24)

    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="fine_tune", params=fine_tune(lm(), dataset(name="old", archived=True)))

    assert refused.value.message_dict["params"] == [
        "dataset: Dataset old is archived; un-archive it to use it."
    ]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"method": "lora", "lora_rank": 128}, "lora_rank: Rank 128 is above"),
        ({"seq_len": 1024}, "seq_len: 1,024 tokens is more than"),
        ({"base_version": 999_999}, "base_version: No model version has id 999999."),
        ({"dataset": 999_999}, "dataset: No dataset has id 999999."),
    ],
)
def test_bad_parameters_are_refused_keyed_params_naming_the_parameter(change: dict, words: str) -> None:
    gpu(24)

    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="fine_tune", params={**fine_tune(lm(), dataset()), **change})

    assert any(line.startswith(words) for line in refused.value.message_dict["params"])
    assert not Job.objects.exists()


def test_a_dataset_not_validated_yet_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="fine_tune", params=fine_tune(lm(), dataset(state="pending", name="fresh")))

    assert "dataset: Dataset fresh is not validated yet" in refused.value.message_dict["params"][0]


def test_an_invalid_dataset_is_refused_with_its_error_count() -> None:
    data = dataset(state="invalid", name="broken", error_count=3)

    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="fine_tune", params=fine_tune(lm(), data))

    assert "failed validation (3 bad rows)" in refused.value.message_dict["params"][0]


def test_a_base_that_is_not_a_hugging_face_causal_lm_is_refused() -> None:
    version = lm(format="gguf")

    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="fine_tune", params=fine_tune(version, dataset()))

    assert "takes a causal LM in a Hugging Face folder" in refused.value.message_dict["params"][0]


def test_a_job_no_device_could_take_is_refused_with_the_schedulers_reason() -> None:
    gpu(24)

    with pytest.raises(placing.PlacementRefused) as refused:
        services.job_create(kind="fine_tune", params=fine_tune(lm(), dataset(), memory_bytes=40 * GIB))

    assert "needs 40.0 GiB; the largest device" in str(refused.value)
    assert "wait_for_room" in str(refused.value)
    assert not Job.objects.exists()


def test_a_job_that_may_wait_for_room_waits_saying_why() -> None:
    gpu(24)

    job = services.job_create(
        kind="fine_tune", params=fine_tune(lm(), dataset(), memory_bytes=40 * GIB), wait_for_room=True
    )

    assert job.state == JobState.QUEUED
    assert job.message.startswith("Waiting for room: needs 40.0 GiB")


def test_a_device_kind_is_not_sent_to_a_queue_by_name() -> None:
    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="benchmark", params={"version": lm().pk}, queue="gpu.node1.0")

    assert "pin a device instead" in refused.value.message_dict["queue"][0]


def test_a_selftest_cannot_be_pinned_to_a_device() -> None:
    with pytest.raises(ValidationError) as refused:
        services.job_create(kind="selftest", device=gpu(24))

    assert "device" in refused.value.message_dict


def test_a_conversion_is_for_admins_only(make_user: Any) -> None:
    pickled = lm(format="pytorch")

    with pytest.raises(PermissionDenied, match="Only an admin may queue a convert job"):
        services.job_create(
            kind="convert", params={"version": pickled.pk}, created_by=make_user(Role.OPERATOR)
        )

    job = services.job_create(
        kind="convert", params={"version": pickled.pk}, created_by=make_user(Role.ADMIN)
    )
    assert (job.queue, job.model_version) == ("default", pickled)


def test_an_admins_api_key_of_operator_role_cannot_queue_a_conversion(make_user: Any) -> None:
    with pytest.raises(PermissionDenied):
        services.job_create(
            kind="convert",
            params={"version": lm(format="pytorch").pk},
            created_by=make_user(Role.ADMIN),
            acting_role=Role.OPERATOR,
        )
