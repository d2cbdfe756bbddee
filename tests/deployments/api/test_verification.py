from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.checks import CheckName, CheckStatus
from tests.deployments.factories import CheckResultFactory, VerificationRunFactory

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]


def test_verification_runs_list_their_checks_nested(client_as: Client) -> None:
    run = VerificationRunFactory()
    CheckResultFactory(run=run, name=CheckName.HEALTH, status=CheckStatus.PASS, duration_ms=12)
    CheckResultFactory(run=run, name=CheckName.SECURITY, status=CheckStatus.FAIL, reason="pickle found")

    response = client_as(Role.VIEWER).get("/api/v1/verification-runs/")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["release"], row["state"]) == (run.release_id, "queued")
    assert [(c["name"], c["status"], c["reason"]) for c in row["checks"]] == [
        ("health", "pass", "the probe answered"),
        ("security", "fail", "pickle found"),
    ]


def test_verification_runs_filter_by_release(client_as: Client) -> None:
    run = VerificationRunFactory()
    VerificationRunFactory()

    response = client_as(Role.VIEWER).get("/api/v1/verification-runs/", {"release": run.release_id})

    assert [row["id"] for row in response.json()["results"]] == [run.pk]


def test_check_results_filter_by_status(client_as: Client) -> None:
    failed = CheckResultFactory(status=CheckStatus.FAIL)
    CheckResultFactory(status=CheckStatus.PASS)

    response = client_as(Role.VIEWER).get("/api/v1/check-results/", {"status": "fail"})

    assert [row["id"] for row in response.json()["results"]] == [failed.pk]


def test_check_result_shows_its_evidence(client_as: Client) -> None:
    check = CheckResultFactory(evidence={"latency_ms": 41})

    response = client_as(Role.VIEWER).get(f"/api/v1/check-results/{check.pk}/")

    assert response.json()["evidence"] == {"latency_ms": 41}


def test_unknown_verification_run_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get("/api/v1/verification-runs/999999/").status_code == 404


@pytest.mark.parametrize("url", ["/api/v1/verification-runs/", "/api/v1/check-results/"])
def test_verification_is_read_only_even_for_admins(client_as: Client, url: str) -> None:
    assert client_as(Role.ADMIN).post(url, {}, format="json").status_code == 405


def test_verification_runs_refuse_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get("/api/v1/verification-runs/").status_code == 401


def test_the_verification_suite_lists_every_check_in_order_with_its_timeout(client_as: Client) -> None:
    response = client_as(Role.VIEWER).get("/api/v1/verification-checks/")

    assert response.status_code == 200
    rows = response.json()
    assert [row["name"] for row in rows] == [c.value for c in CheckName]
    assert all(row["description"] and row["timeout_s"] > 0 for row in rows)


def test_the_verification_suite_refuses_anonymous_callers(client_as: Client) -> None:
    assert client_as(None).get("/api/v1/verification-checks/").status_code == 401
