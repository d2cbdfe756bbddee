"""The per-minute rollup of serving figures, against a real Redis and the database: what a minute's
row holds, that running it again changes nothing, and retention."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.test import override_settings

from apps.core.redis_clients import redis_client
from apps.deployments import figures, rollup, tasks
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import ReleaseState
from apps.deployments.models import Release, ServingMinute
from moc_site.celery import app
from tests.deployments.factories import ReleaseFactory

pytestmark = pytest.mark.django_db

NOW = 1_800_000_030.0  # 30 s into a minute
MINUTE = 1_800_000_000 - 120  # a minute that ended well before NOW


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


def release(slo_p99_ms: float | None = None) -> Release:
    return ReleaseFactory(state=ReleaseState.PROMOTED, deployment__slo_p99_ms=slo_p99_ms)


def traffic(client: redis.Redis, release_id: int, at: float) -> None:
    """In one minute: 8 answers at 50 ms with tokens, 2 at 900 ms, an error, two refusals."""
    for i in range(8):
        figures.record(
            client,
            release_id=release_id,
            outcome=Outcome.OK,
            latency_ms=50,
            ttft_ms=20,
            itl_ms=4,
            tokens_out=10,
            queue_ms=1,
            at=at + i,
        )
    for i in range(2):
        figures.record(client, release_id=release_id, outcome=Outcome.OK, latency_ms=900, at=at + 20 + i)
    figures.record(client, release_id=release_id, outcome=Outcome.ERROR, latency_ms=50, at=at + 30)
    figures.record(
        client,
        release_id=release_id,
        outcome=Outcome.REFUSED,
        latency_ms=0,
        refusal="bulkhead_full",
        at=at + 40,
    )
    figures.record(client, release_id=release_id, outcome=Outcome.REFUSED, latency_ms=0, at=at + 59)


def test_a_minute_of_traffic_becomes_one_row_with_its_figures(client: redis.Redis) -> None:
    served = release(slo_p99_ms=200)
    traffic(client, served.pk, MINUTE)

    done = rollup.minutes_roll_up(client=client, now=NOW)

    row = ServingMinute.objects.get()
    assert done.minutes == 1
    assert (row.release_id, row.deployment_id, row.version_id) == (
        served.pk,
        served.deployment_id,
        served.model_version_id,
    )
    assert row.minute == datetime.fromtimestamp(MINUTE, tz=UTC)
    assert (row.requests, row.ok, row.errors, row.refused, row.rejected) == (13, 10, 1, 2, 0)
    assert row.refusals == {"bulkhead_full": 1}
    assert row.tokens_out == 80
    assert row.ttft_p50_ms == pytest.approx(20)
    assert row.itl_p99_ms == pytest.approx(4, rel=0.05)
    assert row.queue_p50_ms == pytest.approx(1)
    assert row.latency_p50_ms == pytest.approx(50)


def test_goodput_is_the_answers_within_the_deployments_slo(client: redis.Redis) -> None:
    strict, lax = release(slo_p99_ms=200), release(slo_p99_ms=None)
    traffic(client, strict.pk, MINUTE)
    traffic(client, lax.pk, MINUTE)

    rollup.minutes_roll_up(client=client, now=NOW)

    # 9 of 11 under 200 ms, one of them failed: about 10 x 9/11 of the answers.
    assert ServingMinute.objects.get(release=strict).good == 8
    assert ServingMinute.objects.get(release=lax).good == 10  # no SLO: every answer


def test_running_it_again_changes_nothing_and_later_counts_update_the_same_row(client: redis.Redis) -> None:
    served = release()
    traffic(client, served.pk, MINUTE)
    rollup.minutes_roll_up(client=client, now=NOW)
    first = list(ServingMinute.objects.values())

    rollup.minutes_roll_up(client=client, now=NOW)
    assert list(ServingMinute.objects.values()) == first

    # A request counted late in that minute (a process whose clock is behind) is caught up.
    figures.record(client, release_id=served.pk, outcome=Outcome.OK, latency_ms=50, at=MINUTE + 59)
    rollup.minutes_roll_up(client=client, now=NOW + 60)
    assert ServingMinute.objects.get().ok == 11


def test_only_complete_minutes_of_releases_with_traffic_are_rolled_up(client: redis.Redis) -> None:
    served, idle = release(), release()
    traffic(client, served.pk, NOW - 30)  # the minute still filling
    figures.record(client, release_id=served.pk, outcome=Outcome.OK, latency_ms=5, at=NOW - 35)

    rollup.minutes_roll_up(client=client, now=NOW)

    [row] = ServingMinute.objects.all()
    assert row.minute == datetime.fromtimestamp(NOW - 60 - 30, tz=UTC)
    assert row.ok == 1
    assert not ServingMinute.objects.filter(release=idle).exists()


@override_settings(MOC_SERVING_FIGURES_RETENTION_DAYS=2)
def test_rows_past_retention_are_deleted(client: redis.Redis) -> None:
    served = release()
    at = datetime.fromtimestamp(NOW, tz=UTC)
    for age in (timedelta(days=3), timedelta(days=1)):
        ServingMinute.objects.create(
            deployment=served.deployment, release=served, version=served.model_version, minute=at - age
        )

    done = rollup.minutes_roll_up(client=client, now=NOW)

    assert done.pruned == 1
    assert list(ServingMinute.objects.values_list("minute", flat=True)) == [at - timedelta(days=1)]


def test_the_buckets_live_longer_than_the_rollup_looks_back() -> None:
    assert (rollup.LOOKBACK_MINUTES + 1) * 60 + rollup.GRACE_S < figures.BUCKET_TTL_S


def test_beat_rolls_up_every_minute_with_the_task(client: redis.Redis) -> None:
    entry = app.conf.beat_schedule["deployments-serving-minutes-roll-up"]
    served = release()
    figures.record(client, release_id=served.pk, outcome=Outcome.OK, latency_ms=5, at=time.time() - 90)

    done = tasks.serving_minutes_roll_up.run()

    assert entry["task"] == tasks.serving_minutes_roll_up.name
    assert entry["options"]["expires"] < 60
    assert done == {"minutes": 1, "pruned": 0}
    assert ServingMinute.objects.get().ok == 1
