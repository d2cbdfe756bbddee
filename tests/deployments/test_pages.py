from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.deployments import figures, rollup
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release, ReleaseEvent, ServingMinute
from tests.deployments.factories import (
    CheckResultFactory,
    DeploymentFactory,
    ReleaseFactory,
    ValidVersionFactory,
    VerificationRunFactory,
)
from tests.fleet.factories import DeviceFactory

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]


def page(client: APIClient, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def submit(client: APIClient, url: str, data: dict | None = None, **kwargs: object) -> object:
    """A form's POST, as a browser sends it."""
    return client.post(url, data or {}, format="multipart", **kwargs)


def promoted(deployment: Deployment, **fields: object) -> Release:
    stable = ReleaseFactory(deployment=deployment, state=ReleaseState.PROMOTED, traffic_percent=100, **fields)
    deployment.current_release = stable
    deployment.registered_model = stable.model_version.model
    deployment.save()
    return stable


def canary_of(deployment: Deployment, stable: Release, **fields: object) -> Release:
    values = {
        "state": ReleaseState.PROGRESSING,
        "strategy": "canary",
        "steps": [10, 50, 100],
        "traffic_percent": 10,
        "previous_release": stable,
        "model_version": ValidVersionFactory(model=stable.model_version.model),
    }
    values.update(fields)
    return ReleaseFactory(deployment=deployment, **values)


# ---- the list ------------------------------------------------------------------------------


def test_deployments_list_shows_deployments_with_state_badges(client_as: Client) -> None:
    DeploymentFactory(name="chat", state=DeploymentState.ACTIVE)
    DeploymentFactory(name="embed", state=DeploymentState.PAUSED)

    html = page(client_as(Role.VIEWER), reverse("deployments:list"))

    assert '<span class="badge ok">Active</span>' in html
    assert '<span class="badge warn">Paused</span>' in html


def test_deployments_list_shows_environment_live_version_split_and_last_minutes_figures(
    client_as: Client,
) -> None:
    deployment = DeploymentFactory(name="chat", environment="production", state=DeploymentState.ACTIVE)
    stable = promoted(deployment)
    canary = canary_of(deployment, stable)
    client, now = redis_client(), time.time()
    for i in range(50):  # 50 requests in the last minute, 5 of them failed, all at 40 ms
        outcome = Outcome.ERROR if i < 5 else Outcome.OK
        figures.record(client, release_id=stable.pk, outcome=outcome, latency_ms=40, at=now - 10)
    figures.record(client, release_id=canary.pk, outcome=Outcome.OK, latency_ms=40, at=now - 10)
    figures.record(client, release_id=stable.pk, outcome=Outcome.OK, latency_ms=40, at=now - 600)  # too old

    html = page(client_as(Role.VIEWER), reverse("deployments:list"))

    for heading in ["Environment", "Live version", "Split", "RPS", "p99", "Errors"]:
        assert f">{heading}</th>" in html
    assert "Production" in html
    assert f"{stable.model_version} 90% · {canary.model_version} 10%" in html
    assert '<td class="num" data-col="rps">0.9</td>' in html  # 51 requests / 60 s
    assert '<td class="num" data-col="p99">40 ms</td>' in html  # all at 40 ms: read as 40 ms
    assert '<td class="num" data-col="errors">9.8%</td>' in html  # 5 of 51


def test_deployments_list_without_requests_shows_dashes(client_as: Client) -> None:
    promoted(DeploymentFactory(name="chat"))

    html = page(client_as(Role.VIEWER), reverse("deployments:list"))

    assert '<td class="num" data-col="rps">—</td>' in html


def test_deployments_list_reads_its_figures_in_one_redis_round_trip(
    client_as: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(4):
        promoted(DeploymentFactory(name=f"chat-{n}"))
    calls = []
    real = figures.series
    monkeypatch.setattr(figures, "series", lambda *a, **kw: calls.append(a) or real(*a, **kw))

    page(client_as(Role.VIEWER), reverse("deployments:list"))

    assert len(calls) == 1
    assert len(list(calls[0][1])) == 4  # every deployment's live release, together


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


# ---- the deployment's page -----------------------------------------------------------------


def test_deployment_page_shows_the_split_the_charts_and_the_live_socket(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat", state=DeploymentState.ACTIVE)
    stable = promoted(deployment)
    canary = canary_of(deployment, stable, step_index=1, traffic_percent=50)

    html = page(client_as(Role.VIEWER), deployment.get_absolute_url())

    assert (
        f'{stable.model_version}</a> <span class="muted">release #{stable.pk}</span> · 50% of traffic' in html
    )
    assert f"release #{canary.pk}</span> · 50% of traffic" in html
    assert "step 2 of 3" in html
    for metric in ["rps", "p50", "p99", "error_rate"]:
        assert f'data-metric="{metric}"' in html
    assert '"ws": "/ws/deployments/chat/"' in html
    assert "vendor/plotly.min.js" in html
    assert "js/deployment.js" in html


def test_deployment_page_has_the_serving_charts_and_their_history_ranges(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat", state=DeploymentState.ACTIVE)
    promoted(deployment)

    html = page(client_as(Role.VIEWER), deployment.get_absolute_url())

    for metric in ["ttft", "itl", "tokens", "queue", "refusals", "goodput"]:
        assert f'data-metric="{metric}"' in html
    for key in ["15m", "1h", "6h", "24h", "7d"]:
        assert f'data-range="{key}"' in html
    assert '"figures": "/api/v1/deployments/chat/figures/"' in html
    assert '<div id="serving-anomalies"' in html
    assert 'class="badge warn"' not in html.split('id="serving-anomalies"')[1].split("</div>")[0]


def test_deployment_page_shows_the_anomaly_badge_with_the_figure_that_moved(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat", state=DeploymentState.ACTIVE)
    stable = promoted(deployment)
    end = rollup.last_complete_minute_end(time.time())
    for i in range(1, 66):  # the error rate at 0-2% for an hour, then 30%
        errors = 18 if i <= 5 else i % 2
        ServingMinute.objects.create(
            deployment=deployment,
            release=stable,
            version=stable.model_version,
            minute=datetime.fromtimestamp(end - 60 * i, tz=UTC),
            ok=60 - errors,
            errors=errors,
            requests=60,
        )

    html = page(client_as(Role.VIEWER), deployment.get_absolute_url())

    badges = html.split('id="serving-anomalies"')[1].split("</div>")[0]
    assert 'class="badge warn" data-figure="error_rate"' in badges
    assert "error rate rose to 30.0%" in badges


def test_deployment_page_shows_the_release_timeline_with_causes_and_actors(
    client_as: Client, operator: object
) -> None:
    deployment = DeploymentFactory(name="chat")
    stable = promoted(deployment, created_by=operator)
    ended = canary_of(
        deployment, stable, state=ReleaseState.ABORTED, traffic_percent=0, reason="p99 2.4× stable's"
    )
    ReleaseEvent.objects.create(
        release=ended,
        kind="analysis",
        from_state="progressing",
        to_state="aborted",
        traffic_percent=0,
        cause=ReleaseEvent.Cause.ANALYSIS,
        message="step 1 failed: p99 2.4× stable's",
    )
    ReleaseEvent.objects.create(
        release=stable, kind="transition", to_state="promoted", cause="operator", actor=operator
    )

    html = page(client_as(Role.VIEWER), deployment.get_absolute_url())

    assert f'id="release-{ended.pk}"' in html
    assert '<span class="badge bad">Aborted</span>' in html
    assert "p99 2.4× stable&#x27;s" in html
    assert "step 1 failed" in html
    assert "Analysis" in html
    assert "Operator (operator)" in html
    assert f'#{stable.pk} <span class="tag">stable</span>' in html
    assert "<td>operator</td>" in html  # who released it


def test_deployment_page_shows_verification_runs_with_checks_and_folded_evidence(client_as: Client) -> None:
    old = VerificationRunFactory(release__deployment__name="chat")
    CheckResultFactory(run=old, reason="old run")
    latest = VerificationRunFactory(release=old.release)
    CheckResultFactory(
        run=latest,
        name=CheckName.PERFORMANCE,
        status=CheckStatus.WARN,
        reason="p99 +8%",
        duration_ms=812,
        evidence={"p99_ms": 41.5},
    )

    html = page(client_as(Role.VIEWER), old.release.deployment.get_absolute_url())

    assert "p99 +8%" in html
    assert '<span class="badge warn">Warn</span>' in html
    assert "812 ms" in html
    assert "<summary>Evidence</summary>" in html
    assert "&quot;p99_ms&quot;: 41.5" in html
    assert html.index(f'id="run-{latest.pk}"') < html.index(f'id="run-{old.pk}"')


def test_deployment_page_without_releases_says_none_yet(client_as: Client) -> None:
    html = page(client_as(Role.VIEWER), DeploymentFactory().get_absolute_url())

    assert "No releases yet" in html
    assert "No verification has run" in html


def test_deployment_page_of_an_unknown_name_is_404(client_as: Client) -> None:
    assert client_as(Role.VIEWER).get(reverse("deployments:detail", args=["nope"])).status_code == 404


def test_the_live_part_alone_is_sent_to_htmx(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")

    response = client_as(Role.VIEWER).get(deployment.get_absolute_url(), HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="deployment-live">')
    assert "<html" not in html


# ---- buttons per state and role -------------------------------------------------------------


def buttons(html: str, release: Release) -> set[str]:
    return {
        action
        for action in ["promote", "pause", "resume", "abort", "rollback", "cancel"]
        if reverse("deployments:release_action", args=[release.pk, action]) in html
    }


@pytest.mark.parametrize(
    ("state", "resume_to", "expected"),
    [
        (ReleaseState.PENDING, "", {"cancel"}),
        (ReleaseState.VERIFYING, "", {"pause", "abort", "rollback"}),
        (ReleaseState.PROGRESSING, "", {"promote", "pause", "abort", "rollback"}),
        (ReleaseState.PAUSED, ReleaseState.PROGRESSING, {"promote", "resume", "abort", "rollback"}),
        (ReleaseState.PAUSED, ReleaseState.VERIFYING, {"resume", "abort", "rollback"}),
        (ReleaseState.ABORTED, "", set()),
    ],
)
def test_an_operator_gets_the_buttons_the_releases_state_allows(
    client_as: Client, state: str, resume_to: str, expected: set[str]
) -> None:
    deployment = DeploymentFactory(name="chat")
    release = canary_of(deployment, promoted(deployment), state=state, resume_to=resume_to)

    html = page(client_as(Role.OPERATOR), deployment.get_absolute_url())

    assert buttons(html, release) == expected


def test_the_serving_promoted_release_can_be_rolled_back_only_with_somewhere_to_go(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")
    first = promoted(deployment)
    second = promoted(deployment, previous_release=first)

    html = page(client_as(Role.OPERATOR), deployment.get_absolute_url())

    assert buttons(html, second) == {"rollback"}
    assert buttons(html, first) == set()


def test_a_viewer_gets_no_buttons_and_no_release_form(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")
    release = canary_of(deployment, promoted(deployment))

    html = page(client_as(Role.VIEWER), deployment.get_absolute_url())

    assert buttons(html, release) == set()
    assert reverse("deployments:release", args=["chat"]) not in html
    assert reverse("deployments:settings", args=["chat"]) not in html


def test_the_release_form_offers_the_deployments_model_versions_and_the_override_to_admins_only(
    client_as: Client,
) -> None:
    deployment = DeploymentFactory(name="chat")
    stable = promoted(deployment)
    mine = ValidVersionFactory(model=stable.model_version.model)
    other = ValidVersionFactory()

    operator_html = page(client_as(Role.OPERATOR), deployment.get_absolute_url())
    admin_html = page(client_as(Role.ADMIN), deployment.get_absolute_url())

    assert f'value="{mine.pk}"' in operator_html
    assert f'value="{other.pk}"' not in operator_html
    assert 'name="override_gate"' not in operator_html
    assert 'name="override_gate"' in admin_html


def test_no_release_form_while_a_release_is_in_progress(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")
    canary_of(deployment, promoted(deployment))

    html = page(client_as(Role.OPERATOR), deployment.get_absolute_url())

    assert reverse("deployments:release", args=["chat"]) not in html


# ---- actions from the page ------------------------------------------------------------------


def test_an_operator_pauses_a_release_from_the_page(client_as: Client, dispatched: list) -> None:
    deployment = DeploymentFactory(name="chat")
    release = canary_of(deployment, promoted(deployment))
    client = client_as(Role.OPERATOR)

    response = submit(
        client,
        reverse("deployments:release_action", args=[release.pk, "pause"]),
        {"reason": "lunch"},
        follow=True,
    )

    release.refresh_from_db()
    assert release.state == ReleaseState.PAUSED
    assert f"Release #{release.pk} is paused." in response.content.decode()
    assert release.events.filter(cause="operator", message="lunch").exists()


def test_a_refused_action_shows_its_reason_on_the_page(client_as: Client, dispatched: list) -> None:
    deployment = DeploymentFactory(name="chat")
    release = canary_of(deployment, promoted(deployment), state=ReleaseState.ABORTED)

    response = submit(
        client_as(Role.OPERATOR),
        reverse("deployments:release_action", args=[release.pk, "promote"]),
        follow=True,
    )

    html = response.content.decode()
    assert f"Release #{release.pk} is aborted; it cannot be promoted." in html
    assert 'class="msg error"' in html


def test_a_viewer_cannot_act_from_the_page(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")
    release = canary_of(deployment, promoted(deployment))

    response = submit(
        client_as(Role.VIEWER), reverse("deployments:release_action", args=[release.pk, "abort"])
    )

    assert response.status_code == 403
    release.refresh_from_db()
    assert release.state == ReleaseState.PROGRESSING


def test_an_operator_releases_a_version_from_the_page(client_as: Client, dispatched: list) -> None:
    DeviceFactory()
    deployment = DeploymentFactory(name="chat")
    stable = promoted(deployment)
    version = ValidVersionFactory(model=stable.model_version.model)

    response = submit(
        client_as(Role.OPERATOR),
        reverse("deployments:release", args=["chat"]),
        {"model_version": version.pk, "strategy": "canary", "steps": "20, 100"},
        follow=True,
    )

    release = Release.objects.get(deployment=deployment, model_version=version)
    assert (release.strategy, release.steps, release.state) == ("canary", [20, 100], "pending")
    assert f"Release #{release.pk} of {version} asked for" in response.content.decode()


def test_a_refused_release_shows_the_services_reason(client_as: Client, dispatched: list) -> None:
    DeviceFactory()
    deployment = DeploymentFactory(name="chat", environment="production")
    stable = promoted(deployment)
    version = ValidVersionFactory(model=stable.model_version.model)

    response = submit(
        client_as(Role.OPERATOR),
        reverse("deployments:release", args=["chat"]),
        {"model_version": version.pk, "strategy": "recreate"},
        follow=True,
    )

    assert not Release.objects.filter(deployment=deployment, model_version=version).exists()
    assert "staging" in response.content.decode()
    assert 'class="msg error"' in response.content.decode()


# ---- settings --------------------------------------------------------------------------------


def test_an_operator_edits_the_settings_on_their_page(client_as: Client) -> None:
    deployment = DeploymentFactory(name="chat")
    client = client_as(Role.OPERATOR)
    form = client.get(reverse("deployments:settings", args=["chat"])).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        slo_p99_ms="250", canary_steps="5, 25, 100", golden_set='[{"prompt": "2+2=", "expected": "4"}]'
    )
    data["required_checks"] = ["health", "quality"]

    response = submit(client, reverse("deployments:settings", args=["chat"]), data)

    assert response.status_code == 302, response.context["form"].errors
    deployment.refresh_from_db()
    assert (deployment.slo_p99_ms, deployment.canary_steps) == (250, [5, 25, 100])
    assert deployment.required_checks == ["health", "quality"]
    assert deployment.golden_set == [{"prompt": "2+2=", "expected": "4"}]


def test_a_bad_setting_is_shown_beside_its_field(client_as: Client) -> None:
    DeploymentFactory(name="chat")
    client = client_as(Role.OPERATOR)
    form = client.get(reverse("deployments:settings", args=["chat"])).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(canary_steps="10, 50", golden_set="[]")

    response = submit(client, reverse("deployments:settings", args=["chat"]), data)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="error-canary_steps"' in html
    assert "100" in response.context["form"].errors["canary_steps"][0]


def test_a_viewer_cannot_open_the_settings(client_as: Client) -> None:
    DeploymentFactory(name="chat")

    assert client_as(Role.VIEWER).get(reverse("deployments:settings", args=["chat"])).status_code == 403


def test_the_deployment_page_reads_a_fixed_number_of_queries_however_many_releases(
    client_as: Callable[[Role | None], APIClient],
) -> None:
    deployment = DeploymentFactory(name="chat")
    client = client_as(Role.VIEWER)

    def releases(count: int) -> int:
        previous = None
        for _ in range(count):
            previous = ReleaseFactory(
                deployment=deployment, state=ReleaseState.ROLLED_BACK, previous_release=previous
            )
            VerificationRunFactory(release=previous)
        with CaptureQueriesContext(connection) as queries:
            page(client, reverse("deployments:detail", args=["chat"]))
        return len(queries)

    assert releases(1) == releases(4)
