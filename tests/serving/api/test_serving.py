"""Loading, unloading, pinning and inference over the API, without a worker: the answers MOC gives
by itself (refusals, limits, validation). Answers from a real worker: tests/integration/test_serving.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core import dispatch
from apps.core.domain.roles import Role
from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.models.domain.formats import ModelFormat
from apps.models.domain.states import ValidationState
from apps.serving import messages
from apps.serving.domain.breaker import BreakerConfig
from apps.serving.domain.errors import ErrorClass
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement, ServingProfile
from apps.serving.resilience import Breakers, Bulkhead
from tests.fleet.factories import GIB, DeviceFactory
from tests.models.factories import ModelVersionFactory
from tests.serving.factories import PlacementFactory

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]
P = PlacementState
ASK = {"task": "generate", "input": {"prompt": "Once upon a time", "max_new_tokens": 4}}


@pytest.fixture(autouse=True)
def sent_tasks(dispatched: list[tuple]) -> list[tuple]:
    """(task name, args, options) of what was sent to the device workers, none of which runs here."""
    return dispatched


def lm(**fields: Any) -> Any:
    return ModelVersionFactory(
        format=ModelFormat.HF,
        kind="causal-lm",
        estimated_vram_bytes=GIB,
        validation_state=ValidationState.VALID,
        **fields,
    )


def loaded(version: Any | None = None) -> Placement:
    return PlacementFactory(version=version or lm(), state=P.LOADED, reserved_bytes=GIB)


def test_an_operator_loads_a_version_and_gets_the_requested_placement(client_as: Client) -> None:
    gpu = DeviceFactory(capacity_bytes=24 * GIB)
    version = lm()

    response = client_as(Role.OPERATOR).post("/api/v1/placements/", {"version": version.pk}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "requested"
    assert body["device"]["id"] == gpu.pk
    assert body["reserved_bytes"] == GIB


def test_a_viewer_cannot_load(client_as: Client) -> None:
    DeviceFactory()

    response = client_as(Role.VIEWER).post("/api/v1/placements/", {"version": lm().pk}, format="json")

    assert response.status_code == 403


def test_a_load_no_device_can_take_is_a_409_saying_why(client_as: Client) -> None:
    DeviceFactory(capacity_bytes=GIB // 2)

    response = client_as(Role.OPERATOR).post("/api/v1/placements/", {"version": lm().pk}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == "placement_refused"
    assert "needs 1.0 GiB" in response.json()["detail"]


def test_a_load_of_an_unknown_version_names_the_field(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post("/api/v1/placements/", {"version": 999999}, format="json")

    assert response.status_code == 400
    assert "version" in response.json()["fields"]


def test_unload_moves_a_loaded_placement_to_unloading(client_as: Client) -> None:
    placement = loaded()

    response = client_as(Role.OPERATOR).post(f"/api/v1/placements/{placement.pk}/unload/", {}, format="json")

    assert response.status_code == 200
    assert response.json()["state"] == "unloading"


def test_unloading_a_placement_that_ended_is_a_409(client_as: Client) -> None:
    placement = PlacementFactory(state=P.FAILED)

    response = client_as(Role.OPERATOR).post(f"/api/v1/placements/{placement.pk}/unload/", {}, format="json")

    assert response.status_code == 409


def test_pin_and_unpin(client_as: Client) -> None:
    placement = loaded()
    operator = client_as(Role.OPERATOR)

    assert operator.post(f"/api/v1/placements/{placement.pk}/pin/", {"pinned": True}, format="json").json()[
        "pinned"
    ]
    assert not operator.post(
        f"/api/v1/placements/{placement.pk}/pin/", {"pinned": False}, format="json"
    ).json()["pinned"]


def test_inference_for_a_version_that_is_not_loaded_is_a_409(client_as: Client) -> None:
    version = lm()

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 409
    assert "not loaded" in response.json()["detail"]


def test_inference_refuses_a_task_the_versions_kind_does_not_answer(client_as: Client) -> None:
    version = lm()

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{version.pk}/infer/",
        {"task": "tensors", "input": {"inputs": {"x": [1]}}},
        format="json",
    )

    assert response.status_code == 400
    assert "task" in response.json()["fields"]


def test_inference_input_errors_name_the_field(client_as: Client) -> None:
    version = lm()

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{version.pk}/infer/",
        {"task": "generate", "input": {"prompt": "hi", "temperature": -1}},
        format="json",
    )

    assert response.status_code == 400
    assert "temperature" in response.json()["fields"]["input"]


def test_inference_through_an_open_breaker_is_a_fast_503_with_the_reason(client_as: Client) -> None:
    placement = loaded()
    breakers = Breakers(redis_client())
    config = BreakerConfig(failure_threshold=2, open_s=30)
    for _ in range(2):
        breakers.record(
            placement.pk,
            config,
            now=time.time(),
            error_class=ErrorClass.OUT_OF_MEMORY,
            error="CUDA out of memory",
        )
    ServingProfile.objects.create(version=placement.version, breaker_failures=2, breaker_open_s=30)

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 503
    assert "out of memory" in response.json()["detail"].lower()
    assert int(response["Retry-After"]) >= 1


def test_inference_past_the_bulkhead_is_a_429_with_retry_after(client_as: Client, sent_tasks: list) -> None:
    placement = loaded()
    ServingProfile.objects.create(version=placement.version, max_concurrency=1, max_queue=0)
    bulkhead = Bulkhead(redis_client(), f"version {placement.version.pk}", concurrency=1, queue=0)

    with bulkhead.slot(wait_s=1, lease_s=30):
        response = client_as(Role.OPERATOR).post(
            f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
        )

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert sent_tasks == []


def test_inference_nobody_answers_is_a_504_and_counts_against_the_breaker(
    client_as: Client, sent_tasks: list
) -> None:
    placement = loaded()
    ServingProfile.objects.create(version=placement.version, request_timeout_s=0.2)

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 504
    (sent,) = sent_tasks
    assert sent[2]["queue"] == placement.device.queue
    assert Breakers(redis_client()).get([placement.pk])[placement.pk].failures == 1


def test_a_key_limited_to_some_deployments_may_not_ask_a_version_directly(
    key_client: Callable[..., APIClient],
) -> None:
    version = lm()
    limited, free = key_client(Role.OPERATOR), key_client(Role.OPERATOR)
    ApiKey.objects.filter(prefix=limited.key_secret.partition(".")[0]).update(limited=True)
    url = f"/api/v1/model-versions/{version.pk}/infer/"

    refused = limited.post(url, ASK, format="json")

    assert refused.status_code == 403
    assert refused.json()["detail"] == "This API key is limited to some deployments; call them instead."
    assert free.post(url, ASK, format="json").status_code == 409  # not loaded: it got past the check


def test_a_viewer_cannot_run_inference(client_as: Client) -> None:
    placement = loaded()

    response = client_as(Role.VIEWER).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 403


def test_serving_profiles_are_configured_by_operators_but_pickles_allowed_only_in_the_admin(
    client_as: Client,
) -> None:
    version = lm()

    response = client_as(Role.OPERATOR).post(
        "/api/v1/serving-profiles/",
        {"version": version.pk, "max_concurrency": 2, "preload": True, "allow_pickle": True},
        format="json",
    )

    assert response.status_code == 201, response.json()
    profile = ServingProfile.objects.get(version=version)
    assert (profile.max_concurrency, profile.preload, profile.allow_pickle) == (2, True, False)


def test_serving_profile_limits_name_the_field(client_as: Client) -> None:
    response = client_as(Role.OPERATOR).post(
        "/api/v1/serving-profiles/", {"version": lm().pk, "max_concurrency": 0}, format="json"
    )

    assert response.status_code == 400
    assert "max_concurrency" in response.json()["fields"]


@pytest.fixture
def worker_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[dict[str, Any], Callable[[], None] | None], None]:
    """Stands in for the device worker (no worker process runs in these tests): whatever is sent to
    it is answered on its reply list with `answer`, after `meanwhile` ran."""

    def set_answer(answer: dict[str, Any], meanwhile: Callable[[], None] | None = None) -> None:
        def send(name: str, *, args: Any = (), **_: Any) -> None:
            if name != messages.PLACEMENT_INFER:
                return
            if meanwhile is not None:
                meanwhile()
            redis_client().rpush(args[2], json.dumps(answer))

        monkeypatch.setattr(dispatch, "send", send)

    return set_answer


def test_an_answer_comes_back_with_its_figures(client_as: Client, worker_answers: Callable) -> None:
    placement = loaded()
    result = {"text": " there", "tokens_in": 4, "tokens_out": 1, "finish_reason": "length"}
    worker_answers({"ok": True, "result": result, "queue_ms": 1.5, "compute_ms": 3.0})

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["result"] == result
    assert (body["placement"], body["queue_ms"], body["compute_ms"]) == (placement.pk, 1.5, 3.0)
    assert body["total_ms"] > 0


def test_a_placement_its_worker_no_longer_holds_is_lost_and_loaded_again(
    client_as: Client, worker_answers: Callable
) -> None:
    placement = loaded()
    DeviceFactory(capacity_bytes=24 * GIB)
    worker_answers({"ok": False, "resident": False, "error_class": "device_lost", "error": "not in memory"})

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 503
    placement.refresh_from_db()
    assert placement.state == P.LOST
    assert Placement.objects.filter(version=placement.version, state=P.REQUESTED).exists()


def test_a_request_that_races_an_unload_is_refused_without_losing_the_placement(
    client_as: Client, worker_answers: Callable
) -> None:
    placement = loaded()

    def unload_meanwhile() -> None:
        Placement.objects.filter(pk=placement.pk).update(state=P.UNLOADING)

    answer = {"ok": False, "resident": False, "error_class": "device_lost", "error": "is being unloaded"}
    worker_answers(answer, unload_meanwhile)

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert Placement.objects.get(pk=placement.pk).state == P.UNLOADING
    assert not Placement.objects.filter(version=placement.version, state=P.REQUESTED).exists()


def test_bad_input_the_worker_finds_is_a_400_and_does_not_count_against_the_breaker(
    client_as: Client, worker_answers: Callable
) -> None:
    placement = loaded()
    worker_answers({"ok": False, "error_class": "bad_input", "error": "prompt is longer than the context"})

    response = client_as(Role.OPERATOR).post(
        f"/api/v1/model-versions/{placement.version.pk}/infer/", ASK, format="json"
    )

    assert response.status_code == 400
    assert "context" in response.json()["fields"]["input"][0]
    breaker = Breakers(redis_client()).get([placement.pk]).get(placement.pk)
    assert breaker is None or breaker.failures == 0


def test_a_serving_profile_cannot_be_moved_to_another_version(client_as: Client) -> None:
    profile = ServingProfile.objects.create(version=lm(), allow_pickle=True)

    response = client_as(Role.OPERATOR).patch(
        f"/api/v1/serving-profiles/{profile.pk}/", {"version": lm().pk}, format="json"
    )

    assert response.status_code == 400
    assert "version" in response.json()["fields"]
    assert ServingProfile.objects.get(pk=profile.pk).version == profile.version
