from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.core import services as core_services
from apps.core.domain.roles import Role
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import EDITABLE_FIELDS, KeyGrant, Release, ReleaseEvent
from tests.deployments.factories import CheckResultFactory, DeploymentFactory, ReleaseFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["deployment", "release", "verificationrun", "checkresult", "releaseevent"])
def test_changelist_loads_for_an_admin_with_a_search(admin_client_: Client, model: str) -> None:
    check = CheckResultFactory(run__release__deployment__name="chat", reason="chat answered")
    ReleaseEvent.objects.create(release=check.run.release, kind="note", message="chat started")

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


def test_deployment_change_page_groups_the_rollout_settings(admin_client_: Client) -> None:
    deployment = DeploymentFactory(name="chat")

    html = admin_client_.get(
        reverse("admin:deployments_deployment_change", args=[deployment.pk])
    ).content.decode()

    for heading in ["Service-level objectives", "Canary analysis", "Verification", "Bulkhead"]:
        assert heading in html
    for field in ["slo_p99_ms", "golden_set", "required_checks", "canary_steps", "on_inconclusive"]:
        assert f'name="{field}"' in html


def test_deployment_add_page_offers_every_field_the_api_takes(admin_client_: Client) -> None:
    html = admin_client_.get(reverse("admin:deployments_deployment_add")).content.decode()

    for field in ["name", *EDITABLE_FIELDS]:
        assert f'name="{field}"' in html, field


def test_release_change_page_shows_its_timeline_read_only(admin_client_: Client) -> None:
    release = ReleaseFactory()
    ReleaseEvent.objects.create(
        release=release, kind="transition", to_state="loading", message="placing 1 replica"
    )

    response = admin_client_.get(reverse("admin:deployments_release_change", args=[release.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "placing 1 replica" in html
    assert 'name="traffic_percent"' not in html  # the engine's to move, not a hand's


def test_release_events_cannot_be_added_or_edited_even_by_an_admin(admin_client_: Client) -> None:
    event = ReleaseEvent.objects.create(release=ReleaseFactory(), kind="note", message="was")

    assert admin_client_.get(reverse("admin:deployments_releaseevent_add")).status_code == 403
    admin_client_.post(reverse("admin:deployments_releaseevent_change", args=[event.pk]), {"message": "is"})

    event.refresh_from_db()
    assert event.message == "was"


def test_releases_cannot_be_added_edited_or_deleted_in_the_admin(admin_client_: Client) -> None:
    """A release added here skipped the staging gate and the one-open-release rule, and its
    deployment or version could be changed under it."""
    release = ReleaseFactory(state=ReleaseState.PENDING)
    other = DeploymentFactory()

    assert admin_client_.get(reverse("admin:deployments_release_add")).status_code == 403
    admin_client_.post(
        reverse("admin:deployments_release_change", args=[release.pk]),
        {"deployment": other.pk, "model_version": release.model_version_id, "strategy": "canary"},
    )
    deleting = admin_client_.post(
        reverse("admin:deployments_release_delete", args=[release.pk]), {"post": "yes"}
    )

    assert deleting.status_code == 403

    release.refresh_from_db()
    assert (release.deployment_id, release.strategy) != (other.pk, "canary")
    assert Release.objects.filter(pk=release.pk).exists()


def test_the_current_release_is_shown_not_edited_in_the_admin(admin_client_: Client) -> None:
    """Traffic moved without a timeline entry, even to another deployment's release."""
    deployment = DeploymentFactory(name="chat")

    html = admin_client_.get(
        reverse("admin:deployments_deployment_change", args=[deployment.pk])
    ).content.decode()

    assert "Current release" in html
    assert 'name="current_release"' not in html
    assert 'name="registered_model"' not in html


def test_key_grants_show_on_their_deployment_and_in_their_own_list(
    admin_client_: Client, make_user: Callable[..., Any]
) -> None:
    deployment = DeploymentFactory(name="chat")
    owner = make_user(Role.OPERATOR, "ci-bot")
    key, _ = core_services.api_key_create(
        owner=owner, name="nightly", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    KeyGrant.objects.create(key=key, deployment=deployment)

    change = admin_client_.get(reverse("admin:deployments_deployment_change", args=[deployment.pk]))
    listed = admin_client_.get(reverse("admin:deployments_keygrant_changelist"), {"q": "nightly"})

    html = change.content.decode()
    assert "On demand" in html
    assert 'name="key_grants-0-key"' in html
    assert len(listed.context["cl"].result_list) == 1
