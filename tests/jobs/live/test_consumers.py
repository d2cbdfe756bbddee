"""The job pages' websockets through the real ASGI application and the channels_redis layer: a
runner's Report reaches a viewer's socket."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import Group, Permission

from apps.core.consumers import CLOSE_UNAUTHENTICATED
from apps.core.domain.roles import Role
from apps.jobs.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from apps.jobs.domain.states import JobState
from apps.jobs.reporting import Report
from moc_site.asgi import application
from tests.jobs.factories import JobFactory
from tests.wsclient import LOCAL_ORIGIN, WebsocketCommunicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def _next_of(communicator: WebsocketCommunicator, kind: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = await communicator.poll_json(left)
        if message is not None and message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} within {timeout} s")


def _running_job() -> Any:
    task_id = uuid.uuid4().hex
    return JobFactory(kind="fine_tune", state=JobState.RUNNING, task_id=task_id, worker="w1")


def test_an_anonymous_visitor_is_refused() -> None:
    job = _running_job()

    async def go() -> Any:
        communicator = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=[LOCAL_ORIGIN])
        return await communicator.connect(timeout=5)

    assert async_to_sync(go)() == (False, CLOSE_UNAUTHENTICATED)


def test_an_unknown_job_is_closed_with_a_code_the_client_can_read(make_user: Callable[..., object]) -> None:
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> tuple[Any, Any]:
        communicator = WebsocketCommunicator(application, "/ws/jobs/999999/", headers=headers)
        connected = await communicator.connect(timeout=5)
        return connected, await communicator.receive_output(2)

    connected, closed = async_to_sync(go)()

    assert connected[0] is True
    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_FOUND}


def test_a_viewer_sees_a_runners_step_on_the_job_and_the_list_sockets(
    make_user: Callable[..., object],
) -> None:
    job = _running_job()
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    def report_a_step() -> None:
        report = Report(job, job.task_id)
        report.step(step=4, total=10, tokens=512, metrics={"train_loss": 2.5}, message="training")

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        one = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        every = WebsocketCommunicator(application, "/ws/jobs/", headers=headers)
        assert (await one.connect(timeout=5))[0]
        assert (await every.connect(timeout=5))[0]
        await sync_to_async(report_a_step)()
        update = await _next_of(one, "job.update")
        row = await _next_of(every, "jobs.row")
        await one.disconnect()
        await every.disconnect()
        return update, row

    update, row = async_to_sync(go)()

    payload = update["payload"]
    assert (payload["id"], payload["step"], payload["total_steps"], payload["percent"]) == (job.pk, 4, 10, 40)
    assert payload["message"] == "training"
    assert [p[1:] for p in payload["metrics"]["items"]] == [["train_loss", 4, 2.5]]
    assert (row["payload"]["id"], row["payload"]["percent"]) == (job.pk, 40)


@pytest.mark.parametrize("path", ["/ws/jobs/{pk}/", "/ws/jobs/"])
def test_a_role_without_view_job_is_refused(make_user: Callable[..., object], path: str) -> None:
    job = _running_job()
    viewers = Group.objects.get(name=Role.VIEWER.value)
    view_job = Permission.objects.get(content_type__app_label="jobs", codename="view_job")
    viewers.permissions.remove(view_job)
    headers = [session_cookie(make_user(Role.VIEWER)), LOCAL_ORIGIN]

    async def go() -> Any:
        communicator = WebsocketCommunicator(application, path.format(pk=job.pk), headers=headers)
        return await communicator.connect(timeout=5)

    try:
        assert async_to_sync(go)() == (False, CLOSE_FORBIDDEN)
    finally:
        viewers.permissions.add(view_job)
