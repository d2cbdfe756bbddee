"""The rollout engine with the database and a real Redis, no worker: replicas are moved to LOADED as
the worker would, verification runs end by their rows, analysis reads recorded figures."""

from __future__ import annotations

from typing import Any

import pytest

from apps.deployments import services
from apps.deployments.domain.states import DeploymentState, ReleaseState, VerificationState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import Deployment, Release, ReleaseEvent
from apps.deployments.rollout import due_release_ids, tick
from apps.deployments.signals import release_ended
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.deployments.factories import DeploymentFactory, ServableVersionFactory
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
from tests.fleet.factories import DeviceFactory

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
    deployment, first = deployment_with_stable()

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
    from tests.deployments.factories import CheckResultFactory

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
    assert release.reason == "verification failed: health failed (no answer)"


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


def test_a_replica_that_fails_to_load_fails_the_release(device: Any) -> None:
    from apps.serving import services as serving

    release = services.release_create(deployment=DeploymentFactory(), model_version=ServableVersionFactory())
    tick(release_id=release.pk)
    placement = Placement.objects.get(releases=release)
    serving.placement_move(placement=placement, to=P.FAILED, error="CUDA out of memory")

    tick(release_id=release.pk)

    release.refresh_from_db()
    assert release.state == R.FAILED
    assert release.reason.endswith("failed: CUDA out of memory")


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
