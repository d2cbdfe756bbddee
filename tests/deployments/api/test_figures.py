"""GET /api/v1/deployments/{name}/figures/ with the serving figures: TTFT, ITL, queue wait, tokens,
refusals by reason and goodput live; history ranges from the per-minute rollup; the figures that
drifted; the `range` parameter refused by name when bad."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.deployments import figures, rollup
from apps.deployments.domain.figures import Outcome
from apps.deployments.models import Deployment, Release, ServingMinute
from tests.deployments.live import serving

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]


def get(client_as: Client, deployment: Deployment, **params: object) -> Any:
    return client_as(Role.VIEWER).get(f"/api/v1/deployments/{deployment.name}/figures/", params)


def minute(release: Release, t: int, **fields: object) -> ServingMinute:
    return ServingMinute.objects.create(
        deployment=release.deployment,
        release=release,
        version=release.model_version,
        minute=datetime.fromtimestamp(t, tz=UTC),
        **fields,
    )


def test_live_figures_carry_the_serving_figures(client_as: Client) -> None:
    deployment, stable, _ = serving()
    Deployment.objects.filter(pk=deployment.pk).update(slo_p99_ms=100)
    client, at = redis_client(), time.time() - figures.BUCKET_S
    for _ in range(4):
        figures.record(
            client,
            release_id=stable.pk,
            outcome=Outcome.OK,
            latency_ms=50,
            ttft_ms=20,
            itl_ms=5,
            tokens_out=10,
            queue_ms=2,
            at=at,
        )
    figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=900, at=at)  # over the SLO
    figures.record(
        client, release_id=stable.pk, outcome=Outcome.REFUSED, latency_ms=0, refusal="bulkhead_full", at=at
    )

    response = get(client_as, deployment, seconds=60)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["range"], body["anomalies"]) == (None, [])
    [release] = body["releases"]
    totals = release["totals"]
    assert (totals["requests"], totals["good"], totals["tokens_out"]) == (5, 4, 40)
    assert totals["refusals"] == {"bulkhead_full": 1}
    assert totals["ttft_p50_ms"] == pytest.approx(20)
    assert totals["itl_p99_ms"] == pytest.approx(5, rel=0.05)
    assert totals["queue_p50_ms"] == pytest.approx(2)
    assert totals["tokens_per_s"] == pytest.approx(40 / 60)
    assert totals["goodput"] == pytest.approx(4 / 60)
    [bucket] = [b for b in release["series"] if b["requests"]]
    assert bucket["tokens_per_s"] == pytest.approx(40 / 5)


def test_the_15_minute_range_is_the_live_buckets(client_as: Client) -> None:
    deployment, stable, _ = serving()
    figures.record(
        redis_client(), release_id=stable.pk, outcome=Outcome.OK, latency_ms=5, at=time.time() - 300
    )

    body = get(client_as, deployment, range="15m").json()

    assert (body["range"], body["seconds"], body["bucket_s"]) == ("15m", 900, 5)
    [release] = body["releases"]
    assert len(release["series"]) == 180
    assert release["totals"]["requests"] == 1


def test_a_history_range_is_read_from_the_rolled_up_minutes_in_coarser_steps(client_as: Client) -> None:
    deployment, stable, _ = serving()
    now = int(time.time())
    step_start = (now - 3_600) // 300 * 300 + 300  # a whole 5-minute step inside the day
    for i in range(3):
        minute(
            stable,
            step_start + 60 * i,
            ok=60,
            requests=61,
            refused=1,
            refusals={"queue_busy": 1},
            latency_p50_ms=10.0 * (i + 1),
            latency_p99_ms=50.0 * (i + 1),
            tokens_out=600,
        )
    minute(stable, now - 2 * 86_400, ok=60, requests=60)  # outside the day

    body = get(client_as, deployment, range="24h").json()

    assert (body["range"], body["seconds"], body["bucket_s"]) == ("24h", 86_400, 300)
    [release] = body["releases"]
    assert release["id"] == stable.pk
    [step] = release["series"]
    assert (step["t"], step["requests"], step["refused"]) == (step_start, 180, 3)
    assert step["refusals"] == {"queue_busy": 3}
    assert step["rps"] == pytest.approx(180 / 300)
    assert step["tokens_per_s"] == pytest.approx(1_800 / 300)
    assert step["p50_ms"] == pytest.approx(20)  # the minutes' medians, weighted by requests
    assert step["p99_ms"] == 150  # the worst minute's tail
    assert release["totals"]["requests"] == 180


def test_the_figures_that_drifted_are_listed(client_as: Client) -> None:
    deployment, stable, _ = serving()
    end = rollup.last_complete_minute_end(time.time())
    for i in range(1, 66):
        minute(stable, end - 60 * i, ok=60, requests=60, ttft_p99_ms=900.0 if i <= 5 else 100.0 + i % 4)

    [moved] = get(client_as, deployment, range="1h").json()["anomalies"]

    assert (moved["figure"], moved["direction"], moved["recent"]) == ("ttft_p99_ms", "up", 900.0)
    assert "time to first token" in moved["reason"]


@pytest.mark.parametrize("bad", ["2h", "week", "1H"])
def test_a_range_it_does_not_offer_is_refused_naming_range(client_as: Client, bad: str) -> None:
    deployment, _, _ = serving()

    response = get(client_as, deployment, range=bad)

    assert response.status_code == 400
    assert "range" in response.json()["fields"]


def test_the_schema_documents_the_range_and_the_serving_figures(client_as: Client) -> None:
    schema = client_as(Role.VIEWER).get("/api/schema/", {"format": "json"}).json()

    op = schema["paths"]["/api/v1/deployments/{name}/figures/"]["get"]
    [param] = [p for p in op["parameters"] if p["name"] == "range"]
    assert set(param["schema"]["enum"]) == {"15m", "1h", "6h", "24h", "7d"}
    props = schema["components"]["schemas"]["Figures"]["properties"]
    assert {"ttft_p99_ms", "itl_p99_ms", "queue_p99_ms", "tokens_per_s", "refusals", "goodput"} <= set(props)
    assert "anomalies" in schema["components"]["schemas"]["DeploymentFigures"]["properties"]
