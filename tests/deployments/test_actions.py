"""Operators' actions on a release: promote, pause, resume, abort, roll back; audited, on the
timeline, refused (409) when the state forbids them or another action won the race."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections, connection

from apps.core import audit
from apps.core.domain.errors import Conflict
from apps.core.models import AuditEvent
from apps.deployments import services
from apps.deployments.domain.states import ReleaseState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release, ReleaseEvent
from apps.deployments.rollout import (
    release_abort,
    release_pause,
    release_promote,
    release_resume,
    release_rollback,
    tick,
)
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.deployments.factories import DeploymentFactory, ServableVersionFactory
from tests.deployments.rollout_steps import ended_ago, state_of, through_verification, unloaded
from tests.fleet.factories import DeviceFactory

R, P = ReleaseState, PlacementState


@pytest.fixture(autouse=True)
def _no_broker(dispatched: list) -> None:
    """No worker runs: what the engine sends is only recorded."""


def canary_under_way(**fields: Any) -> tuple[Deployment, Release, Release]:
    DeviceFactory()
    deployment = DeploymentFactory(step_pause_s=600, **fields)
    stable = through_verification(
        services.release_create(deployment=deployment, model_version=ServableVersionFactory())
    )
    deployment.refresh_from_db()
    version = ServableVersionFactory(model=deployment.registered_model)
    canary = through_verification(
        services.release_create(deployment=deployment, model_version=version, strategy=Strategy.CANARY)
    )
    assert (canary.state, canary.traffic_percent) == (R.PROGRESSING, 10)
    return deployment, stable, canary


@pytest.mark.django_db
def test_manual_promote_skips_the_remaining_steps(operator: Any) -> None:
    deployment, _, canary = canary_under_way()

    release = release_promote(release=canary, by=operator)

    deployment.refresh_from_db()
    assert (release.state, release.traffic_percent, deployment.current_release) == (R.PROMOTED, 100, canary)
    event = canary.events.get(to_state=R.PROMOTED)
    assert (event.cause, event.actor, event.message) == (
        ReleaseEvent.Cause.OPERATOR,
        operator,
        "promoted by operator, skipping the steps left",
    )


@pytest.mark.django_db
def test_actions_are_audited_during_a_request(rf: Any, operator: Any) -> None:
    _, _, canary = canary_under_way()
    request = rf.post("/api/v1/releases/1/pause/")
    request.user = operator
    token = audit.bind_request(request)
    try:
        release_pause(release=canary, by=operator)
    finally:
        audit.unbind_request(token)

    assert AuditEvent.objects.get(action="pause").changes == {"state": ["progressing", "paused"]}


@pytest.mark.django_db
def test_pause_holds_the_traffic_share_and_resume_restarts_the_step_window(operator: Any) -> None:
    _, _, canary = canary_under_way()
    started = canary.step_started_at

    paused = release_pause(release=canary, by=operator, reason="looking at the logs")
    assert (paused.state, paused.traffic_percent, paused.resume_to) == (R.PAUSED, 10, R.PROGRESSING)
    tick(release_id=canary.pk)
    assert state_of(canary) == R.PAUSED

    resumed = release_resume(release=paused, by=operator)

    assert (resumed.state, resumed.traffic_percent) == (R.PROGRESSING, 10)
    assert resumed.step_started_at > started
    assert resumed.analysis_baseline["at"] == pytest.approx(resumed.step_started_at.timestamp())


@pytest.mark.django_db
def test_abort_sends_traffic_back_to_stable_at_once(operator: Any) -> None:
    deployment, stable, canary = canary_under_way()

    release = release_abort(release=canary, by=operator, reason="bad smell")

    deployment.refresh_from_db()
    assert (release.state, release.traffic_percent, release.reason) == (R.ABORTED, 0, "bad smell")
    assert deployment.current_release == stable


@pytest.mark.django_db
def test_rollback_of_a_promoted_release_restores_the_previous_as_current(operator: Any) -> None:
    deployment, stable, canary = canary_under_way(abort_grace_s=30)
    release_promote(release=canary, by=operator)

    release_rollback(release=canary, by=operator)

    deployment.refresh_from_db()
    canary.refresh_from_db()
    stable.refresh_from_db()
    assert deployment.current_release == stable
    assert (canary.state, canary.traffic_percent, stable.traffic_percent) == (R.ROLLED_BACK, 0, 100)
    ended_ago(canary, 31)
    tick(release_id=canary.pk)
    assert list(Placement.objects.filter(releases=canary).values_list("state", flat=True)) == [P.UNLOADING]


@pytest.mark.django_db
def test_rollback_reloads_the_previous_release_when_its_replicas_are_gone(operator: Any) -> None:
    DeviceFactory()
    deployment = DeploymentFactory(abort_grace_s=0)
    stable = through_verification(
        services.release_create(deployment=deployment, model_version=ServableVersionFactory())
    )
    deployment.refresh_from_db()
    version = ServableVersionFactory(model=deployment.registered_model)
    new = services.release_create(deployment=deployment, model_version=version, strategy=Strategy.RECREATE)
    tick(release_id=new.pk)
    unloaded(stable)
    through_verification(new)
    assert state_of(new) == R.PROMOTED

    release_rollback(release=new, by=operator)

    states = list(Placement.objects.filter(releases=stable).values_list("state", flat=True))
    assert sorted(states) == [P.REQUESTED, P.UNLOADED]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "verb"),
    [(release_resume, "resumed"), (release_rollback, "rolled back")],
)
def test_an_action_the_state_forbids_is_a_conflict(operator: Any, action: Any, verb: str) -> None:
    release = through_verification(
        services.release_create(deployment=DeploymentFactory(), model_version=_servable())
    )

    with pytest.raises(Conflict, match=f"is promoted; it cannot be {verb}"):
        action(release=release, by=operator)


def _servable() -> Any:
    DeviceFactory()
    return ServableVersionFactory()


@pytest.mark.django_db
def test_a_stale_copy_is_told_who_moved_the_release(operator: Any, admin_user: Any) -> None:
    _, _, canary = canary_under_way()
    stale = Release.objects.get(pk=canary.pk)
    release_abort(release=canary, by=admin_user)

    with pytest.raises(Conflict, match=r"was aborted by admin at .* meanwhile; it cannot be promoted now"):
        release_promote(release=stale, by=operator)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_promote_and_abort_one_wins_the_other_is_refused(operator: Any, admin_user: Any) -> None:
    _, _, canary = canary_under_way()
    copies = [Release.objects.get(pk=canary.pk), Release.objects.get(pk=canary.pk)]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def act(name: str, action: Any, release: Release, by: Any) -> None:
        try:
            barrier.wait()
            action(release=release, by=by)
            outcomes[name] = "won"
        except Conflict as exc:
            outcomes[name] = str(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [
        threading.Thread(target=act, args=("promote", release_promote, copies[0], operator)),
        threading.Thread(target=act, args=("abort", release_abort, copies[1], admin_user)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(o == "won" for o in outcomes.values()) == [False, True]
    winner = next(name for name, o in outcomes.items() if o == "won")
    loser_message = next(o for o in outcomes.values() if o != "won")
    final = state_of(canary)
    assert final == (R.PROMOTED if winner == "promote" else R.ABORTED)
    assert f"was {final.value}" in loser_message


@pytest.mark.django_db
def test_a_promoted_release_cannot_be_rolled_back_while_a_newer_one_is_under_way(operator: Any) -> None:
    deployment, first, second = canary_under_way()
    second = release_promote(release=second, by=operator)
    version = ServableVersionFactory(model=deployment.registered_model)
    third = through_verification(
        services.release_create(deployment=deployment, model_version=version, strategy=Strategy.CANARY)
    )

    with pytest.raises(
        Conflict,
        match=rf"is promoted; it cannot be rolled back: release #{third.pk} is progressing; abort it first",
    ):
        release_rollback(release=second, by=operator)

    deployment.refresh_from_db()
    assert (deployment.current_release, state_of(third)) == (second, R.PROGRESSING)
    release_abort(release=third, by=operator)
    release_rollback(release=second, by=operator)
    deployment.refresh_from_db()
    assert deployment.current_release == first


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "advice"), [(release_pause, "cancel it instead"), (release_abort, "cancel it instead")]
)
def test_a_pending_release_cannot_be_paused_or_aborted_and_is_told_to_cancel(
    operator: Any, action: Any, advice: str
) -> None:
    release = services.release_create(deployment=DeploymentFactory(), model_version=_servable())

    with pytest.raises(Conflict, match=f"is pending; it cannot be .*: {advice}."):
        action(release=release, by=operator)


@pytest.mark.django_db
def test_an_unverified_paused_release_cannot_be_promoted_and_is_told_what_to_do(operator: Any) -> None:
    release = services.release_create(deployment=DeploymentFactory(), model_version=_servable())
    tick(release_id=release.pk)
    release = release_pause(release=Release.objects.get(pk=release.pk), by=operator)

    with pytest.raises(Conflict, match="not passed verification yet; resume it to verify, or abort it."):
        release_promote(release=release, by=operator)
