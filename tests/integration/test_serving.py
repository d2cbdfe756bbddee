"""Serving end to end: a real device worker (simulated GPU, thread pool) loads the demo models
that tests made here, answers inference through MOC's API, unloads them and frees their memory;
a worker killed mid-load leaves nothing stuck in "loading"."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test.utils import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core import workers
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.fleet.models import Device
from apps.models import demo, scanning
from apps.models.models import ModelVersion
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import InferenceRecord, Placement
from tests.procs import Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-serve"
QUEUE = f"gpu.{NODE}.0"
P = PlacementState


@pytest.fixture
def registered(demo_models: Path) -> Iterator[dict[str, ModelVersion]]:
    """The demo artefacts registered by a real scan, by artefact name."""
    with override_settings(MOC_MODEL_ROOTS=[str(demo_models)]):
        scanning.scan_run(scan=scanning.scan_request())
        yield {name: ModelVersion.objects.get(model__name=name) for name in (demo.BASE, demo.LORA, demo.ONNX)}


@pytest.fixture
def serving_worker(start_worker: Callable[..., Process], demo_models: Path) -> Callable[[], Process]:
    def start() -> Process:
        worker = start_worker(
            queues=QUEUE,
            pool="threads",
            name="serve0",
            MOC_DEVICES="sim:1x24GiB",
            MOC_NODE_NAME=NODE,
            MOC_MODEL_ROOTS=str(demo_models),
        )
        wait_until(
            lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker to register its device"
        )
        return worker

    return start


def settled(placement: Placement, states: set[str], timeout: float = 90) -> Placement:
    def done() -> bool:
        placement.refresh_from_db()
        return placement.state in states

    wait_until(done, timeout, f"placement {placement.pk} to reach {sorted(states)}")
    return placement


def load(client: APIClient, version: ModelVersion) -> Placement:
    response = client.post("/api/v1/placements/", {"version": version.pk}, format="json")
    assert response.status_code == 201, response.json()
    return Placement.objects.get(pk=response.json()["id"])


def ask(client: APIClient, version: ModelVersion, task: str, data: dict[str, Any]) -> Any:
    return client.post(
        f"/api/v1/model-versions/{version.pk}/infer/", {"task": task, "input": data}, format="json"
    )


def test_a_worker_loads_the_demo_lm_answers_through_the_api_and_frees_it_on_unload(
    serving_worker: Callable[[], Process], registered: dict[str, ModelVersion], client_as: Callable
) -> None:
    serving_worker()
    operator = client_as(Role.OPERATOR)

    placement = settled(load(operator, registered[demo.BASE]), {P.LOADED, P.FAILED})

    assert placement.state == P.LOADED, placement.error
    assert placement.measured_bytes
    assert placement.measured_bytes > 100_000
    assert placement.load_seconds
    assert placement.load_seconds > 0
    prompt = {"prompt": "The fleet", "max_new_tokens": 8, "temperature": 0}
    first = ask(operator, registered[demo.BASE], "generate", prompt)
    again = ask(operator, registered[demo.BASE], "generate", prompt)
    assert first.status_code == 200, first.json()
    answer = first.json()
    assert answer["placement"] == placement.pk
    assert answer["result"]["tokens_out"] >= 1
    assert answer["result"]["text"] == again.json()["result"]["text"]  # greedy: the same answer twice
    assert answer["compute_ms"] > 0
    assert answer["total_ms"] >= answer["compute_ms"]
    embedded = ask(operator, registered[demo.BASE], "embed", {"texts": ["a", "b"]})
    assert len(embedded.json()["result"]["embeddings"]) == 2
    wait_until(lambda: InferenceRecord.objects.filter(placement=placement).count() == 3, 10, "records")
    placement.refresh_from_db()
    assert placement.use_count == 3
    assert placement.last_used_at is not None

    response = operator.post(f"/api/v1/placements/{placement.pk}/unload/", {}, format="json")

    assert response.status_code == 200
    placement = settled(placement, {P.UNLOADED})
    assert "freed" in placement.end_reason
    assert ask(operator, registered[demo.BASE], "generate", prompt).status_code == 409


def test_an_adapter_loads_after_its_base_on_the_same_device_and_answers_differently(
    serving_worker: Callable[[], Process], registered: dict[str, ModelVersion], client_as: Callable
) -> None:
    serving_worker()
    operator = client_as(Role.OPERATOR)

    adapter = settled(load(operator, registered[demo.LORA]), {P.LOADED, P.FAILED})

    assert adapter.state == P.LOADED, adapter.error
    base = Placement.objects.get(pk=adapter.depends_on_id)
    assert base.state == P.LOADED
    assert base.device_id == adapter.device_id
    assert base.loaded_at <= adapter.loaded_at
    assert adapter.measured_bytes < base.measured_bytes  # it shares the base's weights
    prompt = {"prompt": "the model", "max_new_tokens": 12, "temperature": 0}
    from_base = ask(operator, registered[demo.BASE], "generate", prompt).json()["result"]["text"]
    from_adapter = ask(operator, registered[demo.LORA], "generate", prompt).json()["result"]["text"]
    assert from_adapter != from_base


def test_the_onnx_export_answers_raw_tensors(
    serving_worker: Callable[[], Process], registered: dict[str, ModelVersion], client_as: Callable
) -> None:
    serving_worker()
    operator = client_as(Role.OPERATOR)
    placement = settled(load(operator, registered[demo.ONNX]), {P.LOADED, P.FAILED})
    assert placement.state == P.LOADED, placement.error

    response = ask(
        operator,
        registered[demo.ONNX],
        "tensors",
        {"inputs": {"input_ids": {"dtype": "int64", "shape": [1, 4], "data": [1, 2, 3, 4]}}},
    )

    assert response.status_code == 200, response.json()
    outputs = response.json()["result"]["outputs"]
    (logits,) = outputs.values()
    assert logits["shape"][:2] == [1, 4]
    bad = ask(operator, registered[demo.ONNX], "tensors", {"inputs": {"nope": [1]}})
    assert bad.status_code == 400
    assert "nope" in bad.json()["detail"]


def test_a_worker_killed_while_loading_leaves_no_placement_loading(
    serving_worker: Callable[[], Process], registered: dict[str, ModelVersion], settings: Any
) -> None:
    worker = serving_worker()
    placement = placing.placement_load(version=registered[demo.BASE])
    # A fresh worker's first load imports torch and transformers: seconds spent in LOADING.
    settled(placement, {P.LOADING}, timeout=30)

    worker.kill()
    # As the worker runs (tests/integration/conftest.py): a beat a second, silent after three.
    settings.MOC_WORKER_HEARTBEAT_S, settings.MOC_WORKER_SILENT_AFTER_S = 1, 3
    time.sleep(4)  # its heartbeat key (three beats long) expires; the reaper's grace passes
    # The reaper runs on a live `default` worker, whose heartbeat says Redis's are current.
    workers.beat(redis_client(), "default@itest", ["default"], time.time())
    placing.placements_reconcile()

    placement.refresh_from_db()
    assert placement.state == P.LOST
    assert QUEUE in placement.error


def test_a_restarted_worker_marks_what_the_old_process_held_as_lost(
    serving_worker: Callable[[], Process], registered: dict[str, ModelVersion]
) -> None:
    worker = serving_worker()
    placement = settled(placing.placement_load(version=registered[demo.ONNX]), {P.LOADED, P.FAILED})
    assert placement.state == P.LOADED, placement.error

    worker.kill()
    serving_worker()

    placement = settled(placement, {P.LOST}, timeout=30)
    assert "restarted" in placement.error
    # It had only just loaded: it may be what killed the worker, so it is not loaded again.
    assert not Placement.objects.filter(version=placement.version).exclude(pk=placement.pk).exists()


def test_a_restarted_worker_loads_again_what_had_been_serving_a_while(
    serving_worker: Callable[[], Process], registered: dict[str, ModelVersion]
) -> None:
    worker = serving_worker()
    served = settled(placing.placement_load(version=registered[demo.ONNX]), {P.LOADED, P.FAILED})
    assert served.state == P.LOADED, served.error
    Placement.objects.filter(pk=served.pk).update(loaded_at=timezone.now() - timedelta(minutes=5))

    worker.kill()
    serving_worker()

    served = settled(served, {P.LOST}, timeout=30)
    others = Placement.objects.exclude(pk=served.pk).filter(version=served.version)
    wait_until(others.exists, 10, "the version to be asked for again")  # just after the LOST commits
    again = others.get()
    assert settled(again, {P.LOADED, P.FAILED}).state == P.LOADED, again.error
    assert again.device_id == served.device_id
