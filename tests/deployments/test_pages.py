from __future__ import annotations

from collections.abc import Callable

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.states import DeploymentState, ReleaseState
from tests.deployments.factories import (
    CheckResultFactory,
    DeploymentFactory,
    ReleaseFactory,
    VerificationRunFactory,
)

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]


def page(client: APIClient, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def test_deployments_list_shows_deployments_with_state_badges(client_as: Client) -> None:
    DeploymentFactory(name="chat", state=DeploymentState.ACTIVE)
    DeploymentFactory(name="embed", state=DeploymentState.PAUSED)

    html = page(client_as(Role.VIEWER), reverse("deployments:list"))

    assert '<span class="badge ok">Active</span>' in html
    assert '<span class="badge warn">Paused</span>' in html


def test_deployments_list_sends_anonymous_visitors_to_log_in(client_as: Client) -> None:
    response = client_as(None).get(reverse("deployments:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_empty_deployments_list_says_how_to_create_one(client_as: Client) -> None:
    assert "POST /api/v1/deployments/" in page(client_as(Role.VIEWER), reverse("deployments:list"))


def test_deployments_list_filters_by_state(client_as: Client) -> None:
    DeploymentFactory(name="live-one", state=DeploymentState.ACTIVE)
    DeploymentFactory(name="draft-one")

    html = page(client_as(Role.VIEWER), reverse("deployments:list"), state="active")

    assert "live-one" in html
    assert "draft-one" not in html


def test_deployment_detail_lists_its_releases_with_badges(client_as: Client) -> None:
    release = ReleaseFactory(deployment__name="chat", state=ReleaseState.ROLLED_BACK, reason="p99 regressed")

    html = page(client_as(Role.VIEWER), release.deployment.get_absolute_url())

    assert f'id="release-{release.pk}"' in html
    assert '<span class="badge bad">Rolled back</span>' in html
    assert "p99 regressed" in html


def test_deployment_detail_shows_the_latest_verification_checks(client_as: Client) -> None:
    old = VerificationRunFactory(release__deployment__name="chat")
    CheckResultFactory(run=old, reason="old run")
    latest = VerificationRunFactory(release=old.release)
    CheckResultFactory(run=latest, name=CheckName.PERFORMANCE, status=CheckStatus.WARN, reason="p99 +8%")

    html = page(client_as(Role.VIEWER), old.release.deployment.get_absolute_url())

    assert "p99 +8%" in html
    assert '<span class="badge warn">Warn</span>' in html
    assert "old run" not in html


def test_deployment_detail_without_releases_says_how_to_ask_for_one(client_as: Client) -> None:
    deployment = DeploymentFactory()

    html = page(client_as(Role.VIEWER), deployment.get_absolute_url())

    assert "POST /api/v1/releases/" in html
    assert "No verification has run" in html


def test_deployment_detail_of_an_unknown_name_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(reverse("deployments:detail", args=["nope"])).status_code == 404
