from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.deployments.domain.states import DeploymentState
from tests.deployments.factories import CheckResultFactory, DeploymentFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["deployment", "release", "verificationrun", "checkresult"])
def test_changelist_loads_for_an_admin_with_a_search(admin_client_: Client, model: str) -> None:
    CheckResultFactory(run__release__deployment__name="chat", reason="chat answered")

    response = admin_client_.get(reverse(f"admin:deployments_{model}_changelist"), {"q": "chat"})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


def test_deployment_changelist_filters_by_state(admin_client_: Client) -> None:
    DeploymentFactory(name="live", state=DeploymentState.ACTIVE)
    DeploymentFactory(name="idea")

    response = admin_client_.get(reverse("admin:deployments_deployment_changelist"), {"state": "active"})

    assert [d.name for d in response.context["cl"].result_list] == ["live"]


def test_check_result_changelist_filters_by_status(admin_client_: Client) -> None:
    failed = CheckResultFactory(status="fail")
    CheckResultFactory(status="pass")

    response = admin_client_.get(reverse("admin:deployments_checkresult_changelist"), {"status": "fail"})

    assert [c.pk for c in response.context["cl"].result_list] == [failed.pk]


def test_verification_run_change_page_shows_its_checks_inline(admin_client_: Client) -> None:
    check = CheckResultFactory(reason="the probe answered in 41 ms")

    response = admin_client_.get(reverse("admin:deployments_verificationrun_change", args=[check.run_id]))

    assert response.status_code == 200
    assert "the probe answered in 41 ms" in response.content.decode()


def test_deployment_change_page_keeps_the_name_read_only(admin_client_: Client) -> None:
    deployment = DeploymentFactory(name="chat")

    response = admin_client_.get(reverse("admin:deployments_deployment_change", args=[deployment.pk]))

    assert 'name="name"' not in response.content.decode()
