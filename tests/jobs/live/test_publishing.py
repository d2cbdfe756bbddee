"""apps.jobs.live: marks coalesced per job, and what one update carries, through the real channels_redis
layer of the session's Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db.utils import OperationalError
from django.utils import timezone

from apps.jobs import live
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job, JobCheckpoint, JobMetric
from tests.jobs.factories import JobEventFactory, JobFactory


def test_marks_within_the_gap_are_sent_once_and_the_next_after_it() -> None:
    coalescer = live.Coalescer(gap_s=0.5)
    for _ in range(50):
        coalescer.mark(7)
    coalescer.mark(8)

    assert coalescer.take_due(now=100.0) == ([7, 8], None)
    coalescer.mark(7)
    due, wait = coalescer.take_due(now=100.2)
    assert due == []
    assert wait == pytest.approx(0.3)
    assert coalescer.take_due(now=100.5) == ([7], None)
    assert coalescer.take_due(now=101.0) == ([], None)  # nothing marked since


def test_a_quiet_job_is_sent_at_once_when_marked_again() -> None:
    coalescer = live.Coalescer(gap_s=0.5)
    coalescer.mark(1)
    coalescer.take_due(now=10.0)
    coalescer.mark(1)

    assert coalescer.take_due(now=12.0) == ([1], None)


class Listener:
    """A channel on the real layer, in the groups given."""

    def __init__(self, *groups: str) -> None:
        self.layer = get_channel_layer()
        self.groups = groups
        self.channel = async_to_sync(self.layer.new_channel)()
        for group in groups:
            async_to_sync(self.layer.group_add)(group, self.channel)

    def next(self, timeout: float = 3) -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            return await asyncio.wait_for(self.layer.receive(self.channel), timeout)

        return async_to_sync(get)()


def _payload(message: dict[str, Any]) -> dict[str, Any]:
    envelope = json.loads(message["payload"]["text"])
    return envelope["payload"] | {"type": envelope["type"]}


@pytest.mark.django_db(transaction=True)
def test_an_update_carries_the_row_and_only_what_is_new_since_the_last() -> None:
    job = JobFactory(kind="fine_tune", state=JobState.RUNNING, step=3, total_steps=10, progress=0.3, eta_s=70)
    first = [JobMetric.objects.create(job=job, name="train_loss", step=s, value=5.0 - s) for s in (1, 2, 3)]
    line = JobEventFactory(job=job, message="step 3")
    JobCheckpoint.objects.create(
        job=job, step=2, path="/ck/job-1/step-00000002", size_bytes=2048, reason="interval"
    )
    listener = Listener(live.job_group(job.pk), live.LIST_GROUP)
    publisher = live.Publisher()

    assert publisher.publish(job.pk) is True
    update = _payload(listener.next())
    row = _payload(listener.next())

    assert update["type"] == live.UPDATE
    assert (update["state"], update["percent"], update["step"], update["total_steps"]) == (
        "running",
        30,
        3,
        10,
    )
    assert update["eta"] == "1 min 10 s"
    assert update["metrics"]["after"] == 0
    assert [p[2:] for p in update["metrics"]["items"]] == [[1, 4.0], [2, 3.0], [3, 2.0]]
    assert update["metrics"]["until"] == first[-1].pk
    assert [item[-1] for item in update["log"]["items"]] == ["step 3"]
    assert update["log"]["until"] == line.pk
    assert update["checkpoints"][0][:3] == [2, 2048, "interval"]
    assert row["type"] == live.ROW
    assert (row["id"], row["percent"], "metrics" in row) == (job.pk, 30, False)

    JobMetric.objects.create(job=job, name="train_loss", step=4, value=1.5)
    publisher.publish(job.pk)
    again = _payload(listener.next())

    assert again["metrics"]["after"] == first[-1].pk
    assert [p[2:] for p in again["metrics"]["items"]] == [[4, 1.5]]
    assert again["log"]["items"] == []


@pytest.mark.django_db(transaction=True)
def test_an_update_that_left_points_out_says_which_it_follows() -> None:
    job = JobFactory(state=JobState.RUNNING)
    points = [JobMetric.objects.create(job=job, name="train_loss", step=s, value=1.0) for s in range(8)]

    update = live.job_update(job, live.Cursor(), points_max=3)

    assert [p[0] for p in update["metrics"]["items"]] == [p.pk for p in points[-3:]]
    assert update["metrics"]["after"] == points[-4].pk  # a page holding less reads the snapshot


@pytest.mark.django_db(transaction=True)
def test_a_runner_marking_a_job_is_published_by_the_thread_at_most_every_gap() -> None:
    job = JobFactory(state=JobState.RUNNING)
    listener = Listener(live.job_group(job.pk))

    started = time.monotonic()
    for step in range(200):
        Job.objects.filter(pk=job.pk).update(step=step)
        live.job_changed(job.pk)
    marking_s = time.monotonic() - started
    received = [_payload(listener.next())]
    deadline = time.monotonic() + live.GAP_S * 3
    while time.monotonic() < deadline:
        try:
            received.append(_payload(listener.next(timeout=deadline - time.monotonic())))
        except TimeoutError:
            break

    assert marking_s < 0.5  # 200 marks: no database, no Redis on the runner's side
    assert 1 <= len(received) <= 3
    assert received[-1]["step"] == 199


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_a_mark_returns_at_once_and_a_publish_fails_quietly(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    job = JobFactory(state=JobState.RUNNING, updated_at=timezone.now())

    started = time.monotonic()
    live.job_changed(job.pk)
    assert time.monotonic() - started < 0.05
    assert live.Publisher().publish(job.pk) is False


@pytest.mark.django_db(transaction=True)
def test_the_publisher_thread_lives_on_when_closing_a_broken_connection_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    closes: list[float] = []

    def broken_close() -> None:  # what closing a connection the server dropped can do
        closes.append(time.monotonic())
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(live, "close_old_connections", broken_close)
    job = JobFactory(state=JobState.RUNNING, step=1)
    listener = Listener(live.job_group(job.pk))
    publisher = live.Publisher(gap_s=0.05)

    publisher.mark(job.pk)
    first = _payload(listener.next())
    thread = publisher._thread
    deadline = time.monotonic() + 3
    while not closes and time.monotonic() < deadline:  # the round that sent it has closed
        time.sleep(0.01)
    Job.objects.filter(pk=job.pk).update(step=2)
    publisher.mark(job.pk)
    second = _payload(listener.next())

    assert (first["step"], second["step"]) == (1, 2)
    assert len(closes) >= 2
    assert thread is not None
    assert thread.is_alive()
    assert publisher._thread is thread  # the same thread went on, not one started again
    assert "could not close the job publisher's database connection" in caplog.text
