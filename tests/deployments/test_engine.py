"""The rollout engine with the database and a real Redis, no worker: replicas are moved to LOADED as
the worker would, verification runs end by their rows, analysis reads recorded figures."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from apps.deployments import rollout, services
from apps.deployments.domain.states import DeploymentState, ReleaseState, VerificationState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release, ReleaseEvent, VerificationRun
from apps.deployments.rollout import (
    due_release_ids,
    release_abort,
    release_pause,
    release_resume,
    release_rollback,
    tick,
)
from apps.deployments.signals import release_ended
from apps.deployments.verification.runner import STALE_AFTER
from apps.models.models import ModelVersion
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.deployments.factories import CheckResultFactory, DeploymentFactory, ServableVersionFactory
from tests.deployments.rollout_steps import (
    ended_ago,
    loaded,
    requests,
    state_of,
    step_started_ago,
    through_verification,
    unloaded,
    verification_ends,
)
from tests.fleet.factories import GIB, DeviceFactory

pytestmark = pytest.mark.django_db
R, P = ReleaseState, PlacementState


@pytest.fixture(autouse=True)
def _no_broker(dispatched: list) -> None:
    """No worker runs: what the engine sends (loads, verification runs, ticks) is only recorded."""


@pytest.fixture
def device() -> Any:
    return DeviceFactory()


def deployment_with_stable(**fields: Any) -> tuple[Deployment, Release]:
    """A deployment whose first release was promoted (nothing to compare with: straight through)."""
    deployment = DeploymentFactory(**fields)
    first = services.release_create(deployment=deployment, model_version=ServableVersionFactory())
    through_verification(first)
    deployment.refresh_from_db()
    assert deployment.current_release == first
    return deployment, first


def new_release(deployment: Deployment, strategy: Strategy, **kwargs: Any) -> Release:
    version = ServableVersionFactory(model=deployment.registered_model)
    return services.release_create(deployment=deployment, model_version=version, strategy=strategy, **kwargs)


def placements(release: Release) -> list[str]:
    return sorted(Placement.objects.filter(releases=release).values_list("state", flat=True))


def test_a_first_release_is_promoted_once_verified_and_activates_its_deployment(device: Any) -> None:
    deployment, first = deployment_with_stable(pinned=True)  # unpinned: tests/deployments/test_wake.py

    first.refresh_from_db()
    deployment.refresh_from_db()
    assert (first.state, first.traffic_percent, deployment.state) == (R.PROMOTED, 100, DeploymentState.ACTIVE)
    assert first.promoted_at is not None
    assert Placement.objects.get(releases=first).pinned


def test_the_timeline_records_every_move(device: Any) -> None:
    _, first = deployment_with_stable()

    moves = list(first.events.filter(kind="transition").values_list("from_state", "to_state"))
    assert moves == [
        ("", R.PENDING),
        (R.PENDING, R.LOADING),
        (R.LOADING, R.VERIFYING),
        (R.VERIFYING, R.PROGRESSING),
        (R.PROGRESSING, R.PROMOTED),
    ]
    assert first.events.filter(kind="verification").exists()


def test_recreate_unloads_the_old_then_loads_the_new(device: Any) -> None:
    deployment, old = deployment_with_stable()
    release = new_release(deployment, Strategy.RECREATE)

    tick(release_id=release.pk)

    assert placements(old) == [P.UNLOADING]
    assert placements(release) == []
    unloaded(old)
    tick(release_id=release.pk)
    assert placements(release) == [P.REQUESTED]
    loaded(release)
    tick(release_id=release.pk)
    verification_ends(release)
    tick(release_id=release.pk)
    deployment.refresh_from_db()
    assert (state_of(release), deployment.current_release) == (R.PROMOTED, release)


def test_blue_green_switches_all_traffic_and_keeps_blue_for_its_window(device: Any) -> None:
    deployment, blue = deployment_with_stable(blue_green_keep_s=300)
    green = new_release(deployment, Strategy.BLUE_GREEN)

    tick(release_id=green.pk)
    assert placements(blue) == [P.LOADED]
    through_verification(green)

    green.refresh_from_db()
    blue.refresh_from_db()
    deployment.refresh_from_db()
    assert (green.state, green.traffic_percent, blue.traffic_percent) == (R.PROMOTED, 100, 0)
    assert deployment.current_release == green
    tick(release_id=green.pk)
    assert placements(blue) == [P.LOADED]  # kept for an instant rollback
    assert green.pk not in due_release_ids()

    ended_ago(green, 301)
    assert green.pk in due_release_ids()
    tick(release_id=green.pk)
    assert placements(blue) == [P.UNLOADING]
    assert placements(green) == [P.LOADED]


def test_canary_walks_its_steps_and_promotes_after_the_last_analysis(device: Any) -> None:
    deployment, stable = deployment_with_stable(step_pause_s=60, min_samples=20)
    canary = through_verification(new_release(deployment, Strategy.CANARY, steps=[10, 50, 100]))
    assert (canary.state, canary.step_index, canary.traffic_percent) == (R.PROGRESSING, 0, 10)

    for step, share in ((0, 10), (1, 50)):
        requests(canary, 30)
        requests(stable, 30)
        tick(release_id=canary.pk)  # mid-pause: it waits
        canary.refresh_from_db()
        assert (canary.step_index, canary.traffic_percent) == (step, share)
        step_started_ago(canary, 61)
        tick(release_id=canary.pk)

    deployment.refresh_from_db()
    assert (state_of(canary), deployment.current_release) == (R.PROMOTED, canary)
    analyses = canary.events.filter(kind="analysis")
    assert analyses.count() == 2
    assert {e.details["outcome"] for e in analyses} == {"successful"}


def test_a_failed_canary_analysis_aborts_at_once_with_traffic_back_to_stable(
    device: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment, stable = deployment_with_stable(step_pause_s=600, min_samples=20, slo_error_rate=0.05)
    canary = through_verification(new_release(deployment, Strategy.CANARY))
    ended: list[dict[str, Any]] = []
    release_ended.connect(lambda **kw: ended.append(kw), weak=False, dispatch_uid="test-ended")

    requests(canary, 40, errors=20)
    requests(stable, 40)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            tick(release_id=canary.pk)  # mid-pause
    finally:
        release_ended.disconnect(dispatch_uid="test-ended")

    canary.refresh_from_db()
    deployment.refresh_from_db()
    assert (canary.state, canary.traffic_percent, deployment.current_release) == (R.ABORTED, 0, stable)
    assert canary.reason.startswith("analysis failed at 10%: error_rate 50.00% is over")
    assert canary.events.get(kind="analysis").cause == ReleaseEvent.Cause.ANALYSIS
    assert placements(canary) == [P.LOADED]  # kept through the grace
    assert [(e["outcome"], e["release"].pk) for e in ended] == [(R.ABORTED, canary.pk)]


def test_an_aborted_canary_is_unloaded_after_its_grace(device: Any) -> None:
    deployment, stable = deployment_with_stable(abort_grace_s=30, slo_error_rate=0.05)
    canary = through_verification(new_release(deployment, Strategy.CANARY))
    requests(canary, 40, errors=20)
    tick(release_id=canary.pk)
    assert canary.pk in due_release_ids()

    ended_ago(canary, 31)
    tick(release_id=canary.pk)

    assert placements(canary) == [P.UNLOADING]
    assert not Placement.objects.get(releases=canary).pinned
    assert placements(stable) == [P.LOADED]


def promoted_over_an_unloaded_stable(**fields: Any) -> tuple[Deployment, Release, Release]:
    """A recreate release promoted over its stable one, whose replica is gone."""
    deployment, stable = deployment_with_stable(**fields)
    release = new_release(deployment, Strategy.RECREATE)
    tick(release_id=release.pk)
    unloaded(stable)
    through_verification(release)
    assert state_of(release) == R.PROMOTED
    return deployment, stable, release


def test_a_rolled_back_release_traffic_falls_back_to_stays_until_the_current_one_has_a_replica_loaded(
    device: Any, operator: Any
) -> None:
    """Traffic answers from the rolled-back release while the release it returned to is loading
    again: unloading it after its grace would leave requests nothing to answer them."""
    _, stable, release = promoted_over_an_unloaded_stable(abort_grace_s=30)
    release_rollback(release=release, by=operator)
    assert placements(stable) == [P.REQUESTED, P.UNLOADED]

    ended_ago(release, 31)
    tick(release_id=release.pk)
    assert placements(release) == [P.LOADED]
    assert release.pk in due_release_ids()

    loaded(stable)
    tick(release_id=release.pk)
    assert placements(release) == [P.UNLOADING]
    assert placements(stable) == [P.LOADED, P.UNLOADED]


def test_a_rolled_back_release_is_not_kept_for_a_current_release_that_has_no_room_to_load(
    operator: Any,
) -> None:
    """One device with room for one replica: the current release's can load only once the
    rolled-back release's is gone, so waiting for it would wait for good."""
    DeviceFactory(capacity_bytes=GIB + GIB // 2)
    _, stable, release = promoted_over_an_unloaded_stable(abort_grace_s=30, pinned=True)
    release_rollback(release=release, by=operator)
    assert placements(stable) == [P.UNLOADED]

    ended_ago(release, 31)
    tick(release_id=release.pk)
    assert placements(release) == [P.UNLOADING]
    unloaded(release)
    tick(release_id=stable.pk)
    assert placements(stable) == [P.REQUESTED, P.UNLOADED]


@pytest.mark.parametrize(("on_inconclusive", "end"), [("pause", R.PAUSED), ("rollback", R.ROLLED_BACK)])
def test_an_inconclusive_step_past_its_timeout(device: Any, on_inconclusive: str, end: ReleaseState) -> None:
    deployment, stable = deployment_with_stable(
        step_pause_s=60, step_timeout_s=120, min_samples=20, on_inconclusive=on_inconclusive
    )
    canary = through_verification(new_release(deployment, Strategy.CANARY))
    requests(canary, 5)  # too few to judge

    step_started_ago(canary, 100)
    tick(release_id=canary.pk)
    assert state_of(canary) == R.PROGRESSING  # still waiting for samples
    step_started_ago(canary, 100)
    tick(release_id=canary.pk)

    canary.refresh_from_db()
    assert canary.state == end
    assert "inconclusive at 10%" in canary.reason
    deployment.refresh_from_db()
    assert deployment.current_release == stable


def test_a_failed_verification_rolls_back_naming_its_checks(device: Any) -> None:
    deployment, stable = deployment_with_stable()
    release = new_release(deployment, Strategy.BLUE_GREEN)
    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)
    run = release.verification_runs.get()
    CheckResultFactory(run=run, name="health", status="fail", required=True, reason="no answer")
    verification_ends(release, VerificationState.FAILED)

    tick(release_id=release.pk)

    release.refresh_from_db()
    deployment.refresh_from_db()
    assert (release.state, deployment.current_release) == (R.ROLLED_BACK, stable)
    assert release.reason.startswith("verification failed: health failed (no answer). Fix what the failed")


def test_a_first_release_whose_verification_fails_has_failed(device: Any) -> None:
    release = services.release_create(deployment=DeploymentFactory(), model_version=ServableVersionFactory())
    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)
    verification_ends(release, VerificationState.ERRORED)

    tick(release_id=release.pk)

    assert state_of(release) == R.FAILED


def test_a_release_that_cannot_be_placed_fails_with_the_schedulers_reason() -> None:
    DeviceFactory(capacity_bytes=1024)
    release = services.release_create(deployment=DeploymentFactory(), model_version=ServableVersionFactory())

    tick(release_id=release.pk)

    release.refresh_from_db()
    assert release.state == R.FAILED
    assert "cannot be placed: needs 1.0 GiB" in release.reason
    assert release.reason.endswith("or change its node or device, then release again")


def test_a_replica_that_fails_to_load_fails_the_release(device: Any) -> None:
    from apps.serving import services as serving

    release = services.release_create(deployment=DeploymentFactory(), model_version=ServableVersionFactory())
    tick(release_id=release.pk)
    placement = Placement.objects.get(releases=release)
    serving.placement_move(placement=placement, to=P.FAILED, error="CUDA out of memory")

    tick(release_id=release.pk)

    release.refresh_from_db()
    assert release.state == R.FAILED
    assert release.reason.endswith("failed: CUDA out of memory. Fix what its error names, then release again")


def test_ticking_twice_changes_nothing_more(device: Any) -> None:
    release = services.release_create(deployment=DeploymentFactory(), model_version=ServableVersionFactory())
    tick(release_id=release.pk)
    before = (placements(release), release.events.count())

    tick(release_id=release.pk)

    assert (placements(release), release.events.count()) == before


def test_replicas_of_a_deployment_go_to_distinct_devices_of_its_node() -> None:
    from tests.fleet.factories import NodeFactory

    node = NodeFactory(name="gpu-box")
    first, second = DeviceFactory(node=node), DeviceFactory(node=node)
    DeviceFactory()  # elsewhere
    release = services.release_create(
        deployment=DeploymentFactory(node="gpu-box", replicas=2), model_version=ServableVersionFactory()
    )

    tick(release_id=release.pk)

    assert set(Placement.objects.filter(releases=release).values_list("device", flat=True)) == {
        first.pk,
        second.pk,
    }


def recreate_until_verifying(deployment: Deployment, old: Release) -> Release:
    """A recreate release of a new version, the old release's replicas unloaded, its own loaded and
    its verification run asked for."""
    release = new_release(deployment, Strategy.RECREATE)
    tick(release_id=release.pk)
    unloaded(old)
    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)
    assert state_of(release) == R.VERIFYING
    return release


def fail_check(release: Release, name: str, reason: str) -> None:
    run = release.verification_runs.order_by("-id").first()
    CheckResultFactory(run=run, name=name, status="fail", required=True, reason=reason)
    verification_ends(release, VerificationState.FAILED)


def test_a_failed_recreate_on_a_full_device_gets_the_previous_release_loaded_again() -> None:
    """One device with room for one replica: the new release's must go before the old one's can
    come back, and the old one is asked for again until it fits (a pinned deployment's: an
    unpinned one's wait for a request)."""
    DeviceFactory(capacity_bytes=GIB + GIB // 2)
    deployment, old = deployment_with_stable(pinned=True)
    release = recreate_until_verifying(deployment, old)
    fail_check(release, "health", "no answer")

    tick(release_id=release.pk)

    assert state_of(release) == R.ROLLED_BACK
    assert placements(release) == [P.UNLOADING]  # it never took traffic: no grace
    assert not Placement.objects.get(releases=release).pinned
    unloaded(release)
    assert old.pk in due_release_ids()
    tick(release_id=old.pk)
    assert placements(old) == [P.REQUESTED, P.UNLOADED]
    assert old.pk not in due_release_ids()
    loaded(old)
    deployment.refresh_from_db()
    assert deployment.current_release == old
    assert old.events.filter(kind="note", message__endswith="asked for them again").exists()


def test_recreate_fails_before_unloading_a_previous_release_that_could_not_be_loaded_again(
    device: Any,
) -> None:
    deployment, old = deployment_with_stable()
    ModelVersion.objects.filter(pk=old.model_version_id).update(archived=True)
    release = new_release(deployment, Strategy.RECREATE)

    tick(release_id=release.pk)

    release.refresh_from_db()
    deployment.refresh_from_db()
    assert (release.state, deployment.current_release) == (R.FAILED, old)
    assert "could not be loaded again: " in release.reason
    assert "is archived. Nothing was unloaded. Make its version loadable again" in release.reason
    assert placements(old) == [P.LOADED]


def test_a_failed_rollback_check_pauses_the_release_instead_of_returning_to_what_cannot_load(
    device: Any, operator: Any
) -> None:
    deployment, old = deployment_with_stable()
    release = recreate_until_verifying(deployment, old)
    ModelVersion.objects.filter(pk=old.model_version_id).update(archived=True)
    fail_check(release, "rollback", f"release #{old.pk} cannot be loaded again: it is archived.")

    tick(release_id=release.pk)

    release.refresh_from_db()
    assert (release.state, release.resume_to) == (R.PAUSED, R.VERIFYING)
    assert "Paused, not rolled back" in release.reason
    assert placements(old) == [P.UNLOADED]  # no reload of what cannot load
    assert placements(release) == [P.LOADED]
    assert old.pk not in due_release_ids()  # current, but a release is under way

    # The person's way out: the rollback check made optional, then resume verifies again.
    Deployment.objects.filter(pk=deployment.pk).update(required_checks=["health"])
    release_resume(release=release, by=operator)
    assert release.verification_runs.count() == 2
    verification_ends(release)
    tick(release_id=release.pk)
    deployment.refresh_from_db()
    assert (state_of(release), deployment.current_release) == (R.PROMOTED, release)


def test_a_paused_canary_that_starts_failing_is_aborted(device: Any, operator: Any) -> None:
    deployment, stable = deployment_with_stable(step_pause_s=600, min_samples=20, slo_error_rate=0.05)
    canary = through_verification(new_release(deployment, Strategy.CANARY, steps=[10, 50, 100]))
    release_pause(release=canary, by=operator)
    requests(canary, 40)
    assert canary.pk in due_release_ids()
    tick(release_id=canary.pk)
    assert state_of(canary) == R.PAUSED  # healthy: held for its person

    requests(canary, 40, errors=40)
    tick(release_id=canary.pk)

    canary.refresh_from_db()
    deployment.refresh_from_db()
    assert (canary.state, canary.traffic_percent, deployment.current_release) == (R.ABORTED, 0, stable)
    assert canary.reason.startswith("analysis failed at 10% while paused: error_rate")


def age_run(release: Release, by: dt.timedelta) -> VerificationRun:
    run = release.verification_runs.order_by("-id").first()
    assert run is not None
    VerificationRun.objects.filter(pk=run.pk).update(
        created_at=run.created_at - by, started_at=(run.started_at or run.created_at) - by
    )
    return run


@pytest.mark.parametrize("state", [VerificationState.QUEUED, VerificationState.RUNNING])
def test_a_verification_run_that_lost_its_worker_is_asked_for_again_once_then_fails(
    device: Any, state: VerificationState
) -> None:
    release = services.release_create(deployment=DeploymentFactory(), model_version=ServableVersionFactory())
    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)
    VerificationRun.objects.filter(release=release).update(state=state, started_at=timezone.now())
    age_run(release, STALE_AFTER - dt.timedelta(seconds=5))
    tick(release_id=release.pk)
    assert release.verification_runs.count() == 1  # within its bound: waited for

    lost = age_run(release, dt.timedelta(seconds=10))
    tick(release_id=release.pk)

    lost.refresh_from_db()
    assert (lost.state, lost.error[:5]) == (VerificationState.ERRORED, "lost:")
    assert release.verification_runs.filter(state=VerificationState.QUEUED).count() == 1
    assert state_of(release) == R.VERIFYING
    age_run(release, STALE_AFTER)
    tick(release_id=release.pk)
    release.refresh_from_db()
    assert release.state == R.FAILED
    assert (
        "with no result: its worker was lost: a run before it was lost too. Check that a worker"
        in release.reason
    )


def worker_lost(release: Release) -> VerificationRun:
    """Its latest run was taken by a worker that went away: RUNNING since past its bound."""
    run = release.verification_runs.order_by("-id").first()
    assert run is not None
    started = timezone.now() - STALE_AFTER - dt.timedelta(seconds=10)
    VerificationRun.objects.filter(pk=run.pk).update(state=VerificationState.RUNNING, started_at=started)
    return run


def test_a_run_lost_after_a_resume_gets_its_one_retry_again(device: Any, operator: Any) -> None:
    """A run lost, its retry ran to the end (a failed rollback check paused the release) and the
    release was resumed: a run lost then is asked for again, not rolled back at once."""
    deployment, stable = deployment_with_stable()
    release = new_release(deployment, Strategy.BLUE_GREEN)
    tick(release_id=release.pk)
    loaded(release)
    tick(release_id=release.pk)
    worker_lost(release)
    tick(release_id=release.pk)
    assert release.verification_runs.filter(state=VerificationState.QUEUED).count() == 1  # the retry
    fail_check(release, "rollback", "no room to load it again")
    tick(release_id=release.pk)
    assert state_of(release) == R.PAUSED
    release_resume(release=release, by=operator)

    lost = worker_lost(release)
    tick(release_id=release.pk)

    lost.refresh_from_db()
    assert (lost.state, lost.error[:5]) == (VerificationState.ERRORED, "lost:")
    assert state_of(release) == R.VERIFYING
    assert release.verification_runs.count() == 4
    assert release.verification_runs.filter(state=VerificationState.QUEUED).count() == 1

    worker_lost(release)  # its retry lost too: given up on now
    tick(release_id=release.pk)

    release.refresh_from_db()
    deployment.refresh_from_db()
    assert (release.state, deployment.current_release) == (R.ROLLED_BACK, stable)
    assert "its worker was lost: a run before it was lost too" in release.reason


def test_a_release_is_held_while_its_deployment_is_paused(device: Any) -> None:
    deployment, old = deployment_with_stable()
    release = new_release(deployment, Strategy.RECREATE)
    services.deployment_pause(deployment=deployment)

    tick(release_id=release.pk)

    assert state_of(release) == R.PENDING
    assert placements(old) == [P.LOADED]
    assert release.pk not in due_release_ids()
    services.deployment_activate(deployment=deployment)
    assert release.pk in due_release_ids()
    tick(release_id=release.pk)
    assert placements(old) == [P.UNLOADING]


def test_a_retired_deployments_replicas_are_unloaded_unless_another_deployment_holds_them(
    device: Any,
) -> None:
    version = ServableVersionFactory()
    staging, production = DeploymentFactory(pinned=True), DeploymentFactory(pinned=True)
    first = through_verification(services.release_create(deployment=staging, model_version=version))
    second = through_verification(services.release_create(deployment=production, model_version=version))
    shared = Placement.objects.get(releases=first)
    assert list(Placement.objects.filter(releases=second)) == [shared]

    assert rollout.deployment_released(deployment=staging) == 0  # production's current holds it
    shared.refresh_from_db()
    assert (shared.state, shared.pinned) == (P.LOADED, True)
    Deployment.objects.filter(pk=staging.pk).update(state=DeploymentState.RETIRED)

    # Staging's current release, retired with it, holds nothing any more.
    assert rollout.deployment_released(deployment=production) == 1
    shared.refresh_from_db()
    assert (shared.state, shared.pinned) == (P.UNLOADING, False)
    assert second.events.filter(kind="note", message__startswith="its deployment was retired").exists()


def test_a_release_sharing_its_replica_with_the_current_release_rests(device: Any, operator: Any) -> None:
    """The same version released again gets the same placement: once the earlier release is done
    with, nothing is left for the engine to unload, so neither release stays due."""
    deployment, first = deployment_with_stable(blue_green_keep_s=0, abort_grace_s=0)
    again = services.release_create(
        deployment=deployment, model_version=first.model_version, strategy=Strategy.BLUE_GREEN
    )
    through_verification(again)
    assert state_of(again) == R.PROMOTED
    assert first.pk not in due_release_ids()
    assert again.pk not in due_release_ids()

    third = services.release_create(
        deployment=deployment, model_version=first.model_version, strategy=Strategy.CANARY
    )
    through_verification(third)
    release_abort(release=third, by=operator)
    tick(release_id=third.pk)

    assert third.pk not in due_release_ids()
    assert placements(again) == [P.LOADED]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_waiting_tick_takes_no_lock(device: Any) -> None:
    """A tick with nothing to do decides from a plain read: it neither waits for nor takes the
    release's lock (on SQLite, the database's write lock)."""
    deployment, _ = deployment_with_stable(step_pause_s=600)
    canary = through_verification(new_release(deployment, Strategy.CANARY))
    held, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():
                Release.objects.select_for_update().filter(pk=canary.pk).update(reason="held")
                held.set()
                done.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(10)
        began = time.monotonic()
        tick(release_id=canary.pk)
        assert time.monotonic() - began < 5  # the holder lets go only after 10 s
    finally:
        done.set()
        holder.join(10)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_make_each_move_once(device: Any) -> None:
    deployment = DeploymentFactory(replicas=2)
    DeviceFactory()
    release = services.release_create(deployment=deployment, model_version=ServableVersionFactory())
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def ticker() -> None:
        try:
            barrier.wait(10)
            tick(release_id=release.pk)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert placements(release) == [P.REQUESTED, P.REQUESTED]
    assert list(release.events.filter(kind="transition").values_list("to_state", flat=True)) == [
        R.PENDING,
        R.LOADING,
    ]
    assert release.events.filter(kind="note", message__startswith="asked for").count() == 1


def test_the_tasks_are_registered_under_the_names_senders_use() -> None:
    from apps.deployments import messages, tasks

    assert (tasks.release_tick.name, tasks.verification_run.name) == (
        messages.RELEASE_TICK,
        messages.VERIFICATION_RUN,
    )
