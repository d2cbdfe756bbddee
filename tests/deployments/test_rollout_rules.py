"""What a release does next (pure rules): each strategy's flow, and how a canary step decides."""

from __future__ import annotations

import dataclasses

import pytest

from apps.deployments.domain.analysis import Analysis, Outcome
from apps.deployments.domain.rollout import Act, View, decide
from apps.deployments.domain.states import OnInconclusive, ReleaseState, VerificationState
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

    assert (decision.act, decision.reason) == (act, "a replica failed: out of memory")


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

    assert decision.reason == "verification failed: health failed (no answer)"


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
    assert decision.reason == "analysis failed at 10%: it was failed"


@pytest.mark.parametrize("outcome", [Outcome.SUCCESSFUL, Outcome.INCONCLUSIVE, None])
def test_a_step_keeps_its_pause_whatever_the_analysis_says_so_far(outcome: Outcome | None) -> None:
    decision = decide(canary_at(0, elapsed=30, outcome=outcome))

    assert (decision.act, decision.until) == (Act.WAIT, NOW + 30)


def test_a_successful_step_moves_to_the_next() -> None:
    decision = decide(canary_at(0, elapsed=60, outcome=Outcome.SUCCESSFUL))

    assert (decision.act, decision.step_index, decision.traffic) == (Act.SET_STEP, 1, 50)


def test_the_step_before_100_promotes_when_successful() -> None:
    """[10, 50, 100] analyses at 10 and 50; 100 is the promotion itself."""
    assert decide(canary_at(1, elapsed=60, outcome=Outcome.SUCCESSFUL)).act == Act.PROMOTE


def test_an_inconclusive_step_waits_for_samples_until_its_timeout() -> None:
    decision = decide(canary_at(1, elapsed=200, outcome=Outcome.INCONCLUSIVE))

    assert (decision.act, decision.until) == (Act.WAIT, NOW - 200 + 360)


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
    assert decision.reason.startswith("analysis inconclusive at 50% after 360 s")


def test_automation_never_promotes_on_inconclusive() -> None:
    for elapsed in (0, 60, 359, 360, 10_000):
        decision = decide(canary_at(1, elapsed=elapsed, outcome=Outcome.INCONCLUSIVE))
        assert decision.act != Act.PROMOTE


def test_a_paused_release_waits_for_a_person() -> None:
    assert decide(canary_at(1, elapsed=10_000, outcome=Outcome.FAILED, state=R.PAUSED)).act == Act.WAIT


def test_blue_green_keeps_the_previous_release_until_its_window_ends() -> None:
    kept = view(
        strategy=Strategy.BLUE_GREEN, state=R.PROMOTED, previous_serving=1, previous_kept_until=NOW + 5
    )

    assert (decide(kept).act, decide(kept).until) == (Act.WAIT, NOW + 5)
    assert decide(dataclasses.replace(kept, now=NOW + 5)).act == Act.UNLOAD_PREVIOUS


def test_an_ended_release_unloads_its_replicas_after_the_grace() -> None:
    ended = view(state=R.ABORTED, own_serving=2, finished_at=NOW - 10, abort_grace_s=30)

    assert decide(ended).act == Act.WAIT
    assert decide(dataclasses.replace(ended, now=NOW + 20)).act == Act.UNLOAD_OWN


def test_an_ended_release_with_nothing_loaded_rests() -> None:
    assert decide(view(state=R.ROLLED_BACK, own_serving=0, finished_at=0)).act == Act.WAIT
