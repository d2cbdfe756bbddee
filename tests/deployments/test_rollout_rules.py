"""What a release does next (pure rules): each strategy's flow, and how a canary step decides."""

from __future__ import annotations

import dataclasses

import pytest

from apps.deployments.domain.analysis import Analysis, Outcome
from apps.deployments.domain.rollout import REASON_MAX, Act, View, decide, reason
from apps.deployments.domain.states import DeploymentState, OnInconclusive, ReleaseState, VerificationState
from apps.deployments.domain.strategy import Strategy

R, V = ReleaseState, VerificationState
NOW = 10_000.0


def verdict(outcome: Outcome) -> Analysis:
    return Analysis(outcome=outcome, metrics=(), reason=f"it was {outcome}")


def view(**changes: object) -> View:
    base = View(
        strategy=Strategy.CANARY, state=R.PROGRESSING, now=NOW, has_previous=True, steps=(10, 50, 100)
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def canary_at(step_index: int, elapsed: float, outcome: Outcome | None, **changes: object) -> View:
    steps = (10, 50, 100)
    return view(
        step_index=step_index,
        traffic_percent=steps[step_index],
        step_started_at=NOW - elapsed,
        analysis=verdict(outcome) if outcome else None,
        step_pause_s=60,
        step_timeout_s=300,
        **changes,
    )


def test_a_pending_release_starts() -> None:
    assert decide(view(state=R.PENDING)).act == Act.START


@pytest.mark.parametrize("strategy", [Strategy.CANARY, Strategy.BLUE_GREEN])
def test_canary_and_blue_green_load_beside_the_previous_release(strategy: Strategy) -> None:
    decision = decide(view(strategy=strategy, state=R.LOADING, replicas_wanted=2, previous_serving=2))

    assert (decision.act, decision.count) == (Act.LOAD, 2)


def test_recreate_unloads_the_previous_release_first() -> None:
    assert (
        decide(view(strategy=Strategy.RECREATE, state=R.LOADING, previous_serving=1)).act
        == Act.UNLOAD_PREVIOUS
    )


def test_recreate_waits_until_the_previous_release_is_gone() -> None:
    assert decide(view(strategy=Strategy.RECREATE, state=R.LOADING, previous_leaving=1)).act == Act.WAIT


def test_loading_asks_only_for_the_replicas_missing() -> None:
    decision = decide(view(state=R.LOADING, replicas_wanted=3, replicas_active=1))

    assert (decision.act, decision.count) == (Act.LOAD, 2)


def test_loading_waits_for_replicas_asked_for() -> None:
    assert (
        decide(view(state=R.LOADING, replicas_wanted=2, replicas_active=2, replicas_loaded=1)).act == Act.WAIT
    )


def test_verification_starts_once_every_replica_is_loaded() -> None:
    assert (
        decide(view(state=R.LOADING, replicas_wanted=2, replicas_active=2, replicas_loaded=2)).act
        == Act.VERIFY
    )


@pytest.mark.parametrize(
    ("strategy", "has_previous", "act"),
    [
        (Strategy.CANARY, True, Act.FAIL),
        (Strategy.BLUE_GREEN, True, Act.FAIL),
        (Strategy.RECREATE, False, Act.FAIL),
        # Recreate already unloaded the previous release: going back to it is a rollback.
        (Strategy.RECREATE, True, Act.ROLL_BACK),
    ],
)
def test_a_failed_replica_ends_the_release(strategy: Strategy, has_previous: bool, act: Act) -> None:
    decision = decide(
        view(strategy=strategy, state=R.LOADING, has_previous=has_previous, replica_error="out of memory")
    )

    assert decision.act == act
    assert decision.reason == "a replica failed: out of memory. Fix what its error names, then release again"


@pytest.mark.parametrize(
    ("run", "has_previous", "act"),
    [
        (None, True, Act.VERIFY),
        (V.QUEUED, True, Act.WAIT),
        (V.RUNNING, True, Act.WAIT),
        (V.PASSED, True, Act.PROGRESS),
        (V.FAILED, True, Act.ROLL_BACK),
        (V.ERRORED, True, Act.ROLL_BACK),
        (V.FAILED, False, Act.FAIL),
    ],
)
def test_verification_decides_whether_traffic_moves(run: str | None, has_previous: bool, act: Act) -> None:
    assert decide(view(state=R.VERIFYING, verification=run, has_previous=has_previous)).act == act


def test_a_failed_verification_names_its_checks() -> None:
    decision = decide(
        view(state=R.VERIFYING, verification=V.FAILED, verification_reason="health failed (no answer)")
    )

    assert decision.reason == (
        "verification failed: health failed (no answer). Fix what the failed checks name and release "
        "again, or make a check optional in the deployment's required checks"
    )


@pytest.mark.parametrize("strategy", [Strategy.RECREATE, Strategy.BLUE_GREEN])
def test_recreate_and_blue_green_promote_once_verified(strategy: Strategy) -> None:
    assert decide(view(strategy=strategy)).act == Act.PROMOTE


def test_a_canary_with_nothing_to_compare_with_promotes_once_verified() -> None:
    assert decide(view(has_previous=False)).act == Act.PROMOTE


def test_a_verified_canary_takes_its_first_step() -> None:
    decision = decide(view(step_index=0, traffic_percent=0))

    assert (decision.act, decision.step_index, decision.traffic) == (Act.SET_STEP, 0, 10)


def test_a_failed_analysis_aborts_at_once_even_mid_pause() -> None:
    decision = decide(canary_at(0, elapsed=5, outcome=Outcome.FAILED))

    assert decision.act == Act.ABORT
    assert decision.reason == (
        "analysis failed at 10%: it was failed. "
        "Traffic is back on stable; fix the version and release it again"
    )


@pytest.mark.parametrize("outcome", [Outcome.SUCCESSFUL, Outcome.INCONCLUSIVE, None])
def test_a_step_keeps_its_pause_whatever_the_analysis_says_so_far(outcome: Outcome | None) -> None:
    assert decide(canary_at(0, elapsed=30, outcome=outcome)).act == Act.WAIT
    assert decide(canary_at(0, elapsed=59.9, outcome=outcome)).act == Act.WAIT


def test_a_successful_step_moves_to_the_next() -> None:
    decision = decide(canary_at(0, elapsed=60, outcome=Outcome.SUCCESSFUL))

    assert (decision.act, decision.step_index, decision.traffic) == (Act.SET_STEP, 1, 50)


def test_the_step_before_100_promotes_when_successful() -> None:
    """[10, 50, 100] analyses at 10 and 50; 100 is the promotion itself."""
    assert decide(canary_at(1, elapsed=60, outcome=Outcome.SUCCESSFUL)).act == Act.PROMOTE


def test_an_inconclusive_step_waits_for_samples_until_its_timeout() -> None:
    """A pause of 60 s and a timeout of 300 s: it waits for samples up to 360 s into the step."""
    assert decide(canary_at(1, elapsed=200, outcome=Outcome.INCONCLUSIVE)).act == Act.WAIT
    assert decide(canary_at(1, elapsed=359.9, outcome=Outcome.INCONCLUSIVE)).act == Act.WAIT
    assert decide(canary_at(1, elapsed=360, outcome=Outcome.INCONCLUSIVE)).act == Act.PAUSE


@pytest.mark.parametrize(
    ("on_inconclusive", "act"), [(OnInconclusive.PAUSE, Act.PAUSE), (OnInconclusive.ROLLBACK, Act.ROLL_BACK)]
)
def test_an_inconclusive_step_past_its_timeout_does_what_the_deployment_says(
    on_inconclusive: OnInconclusive, act: Act
) -> None:
    decision = decide(
        canary_at(1, elapsed=360, outcome=Outcome.INCONCLUSIVE, on_inconclusive=on_inconclusive)
    )

    assert decision.act == act
    assert decision.reason.startswith("analysis inconclusive at 50% after 360 s: it was inconclusive. ")
    assert decision.reason.endswith(
        "Resume to retry the step, promote, or abort"
        if act == Act.PAUSE
        else "Send it more traffic or lower its minimum samples, then release again"
    )


def test_automation_never_promotes_on_inconclusive() -> None:
    for elapsed in (0, 60, 359, 360, 10_000):
        decision = decide(canary_at(1, elapsed=elapsed, outcome=Outcome.INCONCLUSIVE))
        assert decision.act != Act.PROMOTE


@pytest.mark.parametrize("outcome", [Outcome.SUCCESSFUL, Outcome.INCONCLUSIVE, None])
def test_a_paused_release_waits_for_a_person(outcome: Outcome | None) -> None:
    assert decide(canary_at(1, elapsed=10_000, outcome=outcome, state=R.PAUSED)).act == Act.WAIT


def test_a_paused_canary_that_still_takes_traffic_is_aborted_when_its_analysis_fails() -> None:
    decision = decide(canary_at(1, elapsed=10_000, outcome=Outcome.FAILED, state=R.PAUSED))

    assert decision.act == Act.ABORT
    assert decision.reason.startswith("analysis failed at 50% while paused: it was failed. Traffic is back")


def test_a_paused_release_without_traffic_is_not_judged() -> None:
    paused = dataclasses.replace(
        canary_at(1, elapsed=10_000, outcome=Outcome.FAILED, state=R.PAUSED), traffic_percent=0
    )

    assert decide(paused).act == Act.WAIT


def test_blue_green_keeps_the_previous_release_until_its_window_ends() -> None:
    kept = view(
        strategy=Strategy.BLUE_GREEN, state=R.PROMOTED, previous_serving=1, previous_kept_until=NOW + 5
    )

    assert decide(kept).act == Act.WAIT
    assert decide(dataclasses.replace(kept, now=NOW + 5)).act == Act.UNLOAD_PREVIOUS


def test_an_ended_release_unloads_its_replicas_after_the_grace() -> None:
    ended = view(state=R.ABORTED, own_serving=2, finished_at=NOW - 10, abort_grace_s=30)

    assert decide(ended).act == Act.WAIT
    assert decide(dataclasses.replace(ended, now=NOW + 20)).act == Act.UNLOAD_OWN


def test_an_ended_release_with_nothing_loaded_rests() -> None:
    assert decide(view(state=R.ROLLED_BACK, own_serving=0, finished_at=0)).act == Act.WAIT


def test_recreate_refuses_to_unload_a_previous_release_that_could_not_be_loaded_again() -> None:
    decision = decide(
        view(
            strategy=Strategy.RECREATE,
            state=R.LOADING,
            previous_serving=1,
            previous_unloadable="demo v1 is archived.",
        )
    )

    assert decision.act == Act.FAIL
    assert decision.reason.startswith(
        "recreate would unload the previous release, which could not be loaded again: demo v1 is archived. "
        "Nothing was unloaded."
    )


def test_recreate_loads_once_the_previous_release_is_gone_whatever_its_version() -> None:
    gone = view(strategy=Strategy.RECREATE, state=R.LOADING, previous_unloadable="demo v1 is archived.")

    assert decide(gone).act == Act.LOAD


@pytest.mark.parametrize("has_previous", [True, False])
def test_a_failed_rollback_check_pauses_rather_than_going_back_to_what_cannot_load(
    has_previous: bool,
) -> None:
    decision = decide(
        view(
            state=R.VERIFYING,
            verification=V.FAILED,
            has_previous=has_previous,
            verification_reason="rollback failed (release #1 cannot be loaded again: demo v1 is archived.)",
            rollback_failed="release #1 cannot be loaded again: demo v1 is archived.",
        )
    )

    assert decision.act == Act.PAUSE
    assert decision.reason.startswith("verification failed: rollback failed (release #1 cannot be loaded")
    assert "resume to verify again, drop rollback from the deployment's required checks" in decision.reason


def running_since(seconds_ago: float, state: str = V.RUNNING, **changes: object) -> View:
    return view(
        state=R.VERIFYING,
        verification=state,
        verification_run=7,
        verification_since=NOW - seconds_ago,
        verification_stale_s=1000,
        **changes,
    )


@pytest.mark.parametrize("state", [V.QUEUED, V.RUNNING])
def test_a_verification_run_is_waited_for_within_its_bound(state: str) -> None:
    assert decide(running_since(999, state)).act == Act.WAIT


@pytest.mark.parametrize("state", [V.QUEUED, V.RUNNING])
def test_a_verification_run_past_its_bound_is_asked_for_again_once(state: str) -> None:
    decision = decide(running_since(1000, state))

    assert decision.act == Act.REVERIFY
    assert decision.reason == (
        f"verification run #7 was {state} for 1000 s with no result: its worker was lost; "
        "asking for another run"
    )


@pytest.mark.parametrize(("has_previous", "act"), [(True, Act.ROLL_BACK), (False, Act.FAIL)])
def test_a_second_lost_verification_run_ends_the_release(has_previous: bool, act: Act) -> None:
    decision = decide(running_since(1000, verification_lost_before=1, has_previous=has_previous))

    assert decision.act == act
    assert decision.reason.startswith("verification run #7 was running for 1000 s with no result")
    assert decision.reason.endswith(
        "Check that a worker takes the default queue and is not stuck, then release again"
    )


@pytest.mark.parametrize("deployment", [DeploymentState.PAUSED, DeploymentState.RETIRED])
@pytest.mark.parametrize(
    "moving",
    [
        view(state=R.PENDING),
        view(strategy=Strategy.RECREATE, state=R.LOADING, previous_serving=1),
        view(state=R.VERIFYING, verification=V.PASSED),
        canary_at(0, elapsed=60, outcome=Outcome.SUCCESSFUL),
    ],
)
def test_a_release_is_held_while_its_deployment_is_paused_or_retired(deployment: str, moving: View) -> None:
    held = dataclasses.replace(moving, deployment_live=False)

    assert decide(moving).act != Act.WAIT
    assert decide(held).act == Act.WAIT


def test_an_ended_release_of_a_retired_deployment_still_unloads_after_its_grace() -> None:
    ended = view(state=R.ABORTED, own_serving=1, finished_at=NOW - 60, deployment_live=False)

    assert decide(ended).act == Act.UNLOAD_OWN


def test_the_current_release_gets_its_missing_replicas_back() -> None:
    short = view(state=R.PROMOTED, current=True, replicas_wanted=2, replicas_active=1)

    decision = decide(short)

    assert (decision.act, decision.count) == (Act.RESTORE, 1)
    assert decision.reason == "it is the deployment's current release and 1 of its replicas are missing"


@pytest.mark.parametrize(
    "changes",
    [
        {"current": False},  # replaced: nothing to restore
        {"others_open": True},  # a release under way decides what is loaded (recreate unloads it)
        {"deployment_live": False},  # paused or retired
        {"replicas_active": 2},  # nothing missing
        {"unloadable": "demo v1 is archived."},  # a person must make it loadable first
    ],
)
def test_a_promoted_release_is_restored_only_when_current_alone_and_short(changes: dict[str, object]) -> None:
    short = view(state=R.PROMOTED, current=True, replicas_wanted=2, replicas_active=1)

    assert decide(dataclasses.replace(short, **changes)).act == Act.WAIT  # type: ignore[arg-type]


def test_a_long_reason_is_shortened_in_its_middle_never_in_its_advice() -> None:
    said = reason("analysis failed at 10%", "x" * 1000, "Traffic is back on stable")

    assert len(said) == REASON_MAX
    assert said.startswith("analysis failed at 10%: xxx")
    assert said.endswith("x…. Traffic is back on stable")
