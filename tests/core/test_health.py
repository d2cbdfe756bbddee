"""Health endpoints: liveness, readiness against the real session Redis, and /metrics."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from apps.core import workers
from tests.procs import RedisServer, free_port


def test_healthz_answers_anonymous_callers() -> None:
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_fails_without_a_worker_heartbeat(client: Client, viewer: object) -> None:
    client.force_login(viewer)
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["workers"]["ok"] is False
    assert "no Celery worker has sent a heartbeat" in body["checks"]["workers"]["detail"]


@pytest.mark.django_db
def test_readyz_passes_once_a_worker_beats(redis_server: RedisServer, client: Client, viewer: object) -> None:
    workers.beat(redis_server.client(), "celery@gpu-1", ["default", "gpu.local.0"], time.time())
    client.force_login(viewer)

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["workers"] == {"ok": True, "detail": "1 live: celery@gpu-1"}


@pytest.mark.django_db
def test_readyz_tells_anonymous_callers_which_check_failed_but_not_why(settings: object) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {
        "database": {"ok": True},
        "redis": {"ok": False},
        "workers": {"ok": False},
        "outbox": {"ok": True},
    }


@pytest.mark.django_db
def test_a_heartbeat_expires_on_its_own(redis_server: RedisServer, settings: object) -> None:
    workers.beat(redis_server.client(), "celery@gpu-1", ["default"], time.time())

    ttl = redis_server.client().ttl(f"{workers.KEY_PREFIX}celery@gpu-1")

    assert 0 < ttl <= settings.MOC_WORKER_SILENT_AFTER_S


@pytest.mark.django_db
def test_readyz_reports_redis_down(settings: object, client: Client, viewer: object) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    client.force_login(viewer)

    response = client.get("/readyz")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["ok"] is False
    assert "ConnectionError" in checks["redis"]["detail"]
    assert checks["database"]["ok"] is True


@pytest.mark.django_db
def test_metrics_is_prometheus_text_with_request_and_worker_series(redis_server: RedisServer) -> None:
    workers.beat(redis_server.client(), "celery@gpu-1", ["gpu.local.0"], time.time())
    client = Client()
    client.get("/healthz")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert 'moc_http_requests_total{method="GET",route="healthz",status="200"}' in text
    assert 'moc_workers_live{queue="gpu.local.0"} 1.0' in text


@pytest.mark.django_db
def test_metrics_without_the_configured_token_is_forbidden(settings: object) -> None:
    settings.MOC_METRICS_TOKEN = "scrape-me"

    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


@pytest.mark.django_db
def test_metrics_with_the_configured_token_answers(settings: object) -> None:
    settings.MOC_METRICS_TOKEN = "scrape-me"

    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")

    assert response.status_code == 200
    assert "moc_workers_live" in response.content.decode()
