from __future__ import annotations

import pytest

from apps.deployments import selectors
from apps.deployments.domain.states import DeploymentState, ReleaseState
from tests.deployments.factories import DeploymentFactory, ReleaseFactory

pytestmark = pytest.mark.django_db


def test_overview_card_counts_active_deployments_and_releases_in_progress() -> None:
    DeploymentFactory(state=DeploymentState.ACTIVE)
    ReleaseFactory(deployment__state=DeploymentState.ACTIVE, state=ReleaseState.VERIFYING)
    DeploymentFactory(state=DeploymentState.PAUSED)

    [card] = selectors.overview_cards()

    assert (card["label"], card["value"], card["url"]) == ("Deployments active", 2, "/deployments/")
    assert card["hint"] == "1 paused · 0 draft · 1 release in progress"


def test_latest_verification_is_none_for_a_deployment_never_verified() -> None:
    assert selectors.latest_verification(deployment=DeploymentFactory()) is None
