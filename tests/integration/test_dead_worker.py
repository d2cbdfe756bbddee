"""A device worker SIGKILLed under a loaded model, behind a real gunicorn (the run command's 2
processes x 4 threads and deploy/gunicorn.conf.py): a burst of inference requests for it is
refused fast (503, never the 30 s timeout), its placement is lost, and the burst leaves the web
tier threads for everything else: an unrelated page of the API answers at once meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from apps.core.domain.roles import Role
from apps.fleet.models import Device
from apps.models import demo
from apps.models.models import ModelVersion
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.integration.conftest import worker_env
from tests.integration.test_serving import registered, settled  # noqa: F401 (a fixture)
from tests.procs import Process, RedisServer, free_port, gunicorn_command, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-dead"
QUEUE = f"gpu.{NODE}.0"
BURST = 8
# Small, so the test is short: a worker silent this long is dead (the heartbeat is 1 s).
SILENT_AFTER_S = 3
# From the kill: its last beat (at most a heartbeat before it), silence, then at most one BLPOP
# slice (1 s) before a waiting request looks again; the rest is slack for a 2-core machine.
REFUSED_WITHIN_S = SILENT_AFTER_S + 1 + 1 + 2
P = PlacementState


@pytest.fixture
def gunicorn(redis_server: RedisServer, transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """MOC's web process as the run command starts it, on the test database."""
    port = free_port()
    env = worker_env(redis_server, MOC_WORKER_SILENT_AFTER_S=str(SILENT_AFTER_S))
    proc = Process(gunicorn_command(port), env, tmp_path / "gunicorn.log")
    proc.start()
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 60, "gunicorn /healthz")
    yield base
    proc.stop()


def timed(call: Callable[[], httpx.Response]) -> tuple[int, float, str]:
    began = time.monotonic()
    response = call()
    return response.status_code, time.monotonic() - began, response.text


def test_requests_for_a_killed_workers_placement_are_refused_fast_and_leave_threads_free(
    start_worker: Callable[..., Process],
    demo_models: Path,
    registered: dict[str, ModelVersion],  # noqa: F811
    gunicorn: str,
    key_client: Callable[..., object],
) -> None:
    worker = start_worker(
        queues=QUEUE,
        pool="threads",
        name="dead0",
        MOC_DEVICES="sim:1x24GiB",
        MOC_NODE_NAME=NODE,
        MOC_MODEL_ROOTS=str(demo_models),
        MOC_WORKER_SILENT_AFTER_S=str(SILENT_AFTER_S),
    )
    wait_until(lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker's device")
    version = registered[demo.BASE]
    placement = settled(placing.placement_load(version=version), {P.LOADED, P.FAILED})
    assert placement.state == P.LOADED, placement.error
    headers = {"Authorization": f"Bearer {key_client(Role.OPERATOR).key_secret}"}
    ask = {"task": "generate", "input": {"prompt": "The fleet", "max_new_tokens": 4}}

    def infer() -> httpx.Response:
        return httpx.post(
            f"{gunicorn}/api/v1/model-versions/{version.pk}/infer/", json=ask, headers=headers, timeout=60
        )

    def devices() -> httpx.Response:
        return httpx.get(f"{gunicorn}/api/v1/devices/", headers=headers, timeout=60)

    assert infer().status_code == 200  # it answers while its worker lives

    worker.kill()
    killed = time.monotonic()
    with ThreadPoolExecutor(BURST + 1) as pool:
        burst = [pool.submit(timed, infer) for _ in range(BURST)]
        time.sleep(0.5)  # the burst has every thread it can get by now
        meanwhile = pool.submit(timed, devices).result()
        answers = [f.result() for f in burst]
    all_done_s = time.monotonic() - killed

    assert [status for status, _, _ in answers] == [503] * BURST, answers
    assert all_done_s < REFUSED_WITHIN_S, answers
    assert meanwhile[0] == 200
    assert meanwhile[1] < 2, f"GET /api/v1/devices/ took {meanwhile[1]:.1f} s during the burst"
    texts = " ".join(text for _, _, text in answers)
    assert f"{NODE}'s worker for {QUEUE}" in texts
    placement = Placement.objects.get(pk=placement.pk)
    assert placement.state == P.LOST
    assert f"{NODE}'s worker for {QUEUE} has been silent since" in placement.error
