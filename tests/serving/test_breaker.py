"""A placement's circuit breaker: the pure rules, one per test, and invariants under any history."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.serving.domain.breaker import (
    LAST_ERROR_CHARS,
    Breaker,
    BreakerConfig,
    BreakerState,
    admit,
    on_failure,
    on_success,
    retry_after_s,
)

S = BreakerState
CFG = BreakerConfig(failure_threshold=3, open_s=30.0, half_open_probes=1)
T0 = 1_795_000_000.0


def _fail_times(b: Breaker, n: int, now: float = T0, error: str = "timeout: no answer in 10 s") -> Breaker:
    for _ in range(n):
        b = on_failure(b, CFG, now, error)
    return b


def _opened(now: float = T0) -> Breaker:
    return _fail_times(Breaker(), CFG.failure_threshold, now)


def _half_open(now: float = T0 + 30) -> Breaker:
    ok, b, _ = admit(_opened(), CFG, now)
    assert ok
    return b


def test_a_closed_breaker_lets_every_request_through_unchanged() -> None:
    b = _fail_times(Breaker(), 2)

    assert admit(b, CFG, T0) == (True, b, "")


def test_failures_below_the_threshold_keep_it_closed_and_counted() -> None:
    b = _fail_times(Breaker(), 2)

    assert (b.state, b.failures, b.opened_at) == (S.CLOSED, 2, None)


def test_the_thresholds_failure_in_a_row_opens_it() -> None:
    b = _opened(T0)

    assert (b.state, b.failures, b.opened_at, b.opened_count) == (S.OPEN, 3, T0, 1)


def test_a_success_between_failures_starts_the_count_again() -> None:
    b = on_success(_fail_times(Breaker(), 2), CFG, T0)

    assert _fail_times(b, 2).state == S.CLOSED


def test_a_success_with_no_failures_to_clear_changes_nothing() -> None:
    b = Breaker(last_error="timeout: earlier", opened_count=2)

    assert on_success(b, CFG, T0) is b


def test_the_failure_is_kept_as_the_last_error() -> None:
    b = _fail_times(Breaker(), 1, error="out_of_memory: CUDA out of memory")

    assert b.last_error == "out_of_memory: CUDA out of memory"


def test_a_long_error_is_cut_to_a_readable_length() -> None:
    b = _fail_times(Breaker(), 1, error="x" * 10_000)

    assert len(b.last_error) == LAST_ERROR_CHARS


def test_an_open_breaker_refuses_with_the_run_of_failures_and_when_to_come_back() -> None:
    ok, after, reason = admit(_opened(T0), CFG, T0 + 18.5)

    assert (ok, after) == (False, _opened(T0))
    assert reason == (
        "circuit open after 3 failures in a row (last: timeout: no answer in 10 s); next probe in 12 s"
    )


def test_an_open_breaker_tells_to_retry_when_its_open_time_is_up() -> None:
    assert retry_after_s(_opened(T0), CFG, T0 + 18.5) == pytest.approx(11.5)


def test_a_breaker_that_opened_on_one_failure_says_so_without_in_a_row() -> None:
    b = on_failure(Breaker(), replace(CFG, failure_threshold=1), T0, "device_lost: GPU is lost")

    _, _, reason = admit(b, CFG, T0)

    assert reason.startswith("circuit open after 1 failure (last: device_lost: GPU is lost);")


def test_once_open_s_has_passed_it_turns_half_open_and_admits_one_probe() -> None:
    ok, b, reason = admit(_opened(T0), CFG, T0 + 30)

    assert (ok, reason) == (True, "")
    assert (b.state, b.probes, b.opened_at) == (S.HALF_OPEN, 1, T0 + 30)


def test_while_the_probe_is_in_flight_others_are_refused() -> None:
    ok, after, reason = admit(_half_open(T0 + 30), CFG, T0 + 30.2)

    assert (ok, after.probes) == (False, 1)
    assert "half-open" in reason
    assert "1 probe in flight" in reason


def test_a_refused_caller_during_a_probe_is_told_to_come_back_soon() -> None:
    assert retry_after_s(_half_open(T0 + 30), CFG, T0 + 30.2) == 1.0


def test_half_open_admits_as_many_probes_as_configured() -> None:
    cfg = replace(CFG, half_open_probes=2)
    _, b, _ = admit(_opened(), cfg, T0 + 30)

    second, b, _ = admit(b, cfg, T0 + 30)
    third, b, _ = admit(b, cfg, T0 + 30)

    assert (second, third, b.probes) == (True, False, 2)


def test_a_probe_that_succeeds_closes_it() -> None:
    b = on_success(_half_open(), CFG, T0 + 31)

    assert (b.state, b.failures, b.opened_at, b.probes) == (S.CLOSED, 0, None, 0)


def test_a_probe_that_fails_opens_it_again_for_another_open_s() -> None:
    b = on_failure(_half_open(), CFG, T0 + 31, "timeout: again")

    assert (b.state, b.opened_at, b.probes, b.opened_count) == (S.OPEN, T0 + 31, 0, 2)
    assert admit(b, CFG, T0 + 60)[0] is False


def test_a_failing_probe_opens_it_again_even_if_the_threshold_was_raised_meanwhile() -> None:
    b = on_failure(_half_open(), replace(CFG, failure_threshold=10), T0 + 31, "timeout: again")

    assert b.state == S.OPEN


def test_probes_out_for_open_s_are_presumed_lost_and_a_new_one_goes() -> None:
    ok, b, _ = admit(_half_open(T0 + 30), CFG, T0 + 60)

    assert (ok, b.state, b.probes, b.opened_at) == (True, S.HALF_OPEN, 1, T0 + 60)


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_an_outcome_arriving_while_open_changes_nothing(outcome: str) -> None:
    b = _opened(T0)

    after = on_success(b, CFG, T0 + 1) if outcome == "success" else on_failure(b, CFG, T0 + 1, "late")

    assert after is b


def test_closed_means_no_wait() -> None:
    assert retry_after_s(Breaker(failures=2), CFG, T0) == 0.0


@pytest.mark.parametrize("wrong", [{"failure_threshold": 0}, {"half_open_probes": 0}, {"open_s": -1.0}])
def test_impossible_settings_are_refused(wrong: dict) -> None:
    with pytest.raises(ValueError, match="impossible breaker settings"):
        BreakerConfig(**wrong)


# Any history of calls: ("admit",), ("ok",), ("fail",) or ("wait", seconds).
steps = st.lists(
    st.one_of(
        st.sampled_from([("admit",), ("ok",), ("fail",)]),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=100, allow_nan=False)),
    ),
    max_size=60,
)
configs = st.builds(
    BreakerConfig,
    failure_threshold=st.integers(1, 6),
    open_s=st.floats(min_value=0, max_value=60, allow_nan=False),
    half_open_probes=st.integers(1, 3),
)


def _check_consistent(b: Breaker, cfg: BreakerConfig) -> None:
    if b.state == S.CLOSED:
        assert (b.opened_at, b.probes) == (None, 0)
        assert b.failures < cfg.failure_threshold
    else:
        assert b.opened_at is not None
        assert b.failures >= cfg.failure_threshold
        assert b.opened_count >= 1
    if b.state == S.OPEN:
        assert b.probes == 0
    if b.state == S.HALF_OPEN:
        assert 1 <= b.probes <= cfg.half_open_probes


@settings(deadline=None)  # pure and quick; a loaded CI machine must not make it flaky
@given(cfg=configs, history=steps)
def test_any_history_leaves_a_consistent_breaker(cfg: BreakerConfig, history: list[tuple]) -> None:
    b, now = Breaker(), T0
    for step in history:
        before = b
        if step[0] == "wait":
            now += step[1]
            continue
        if step[0] == "admit":
            ok, b, reason = admit(b, cfg, now)
            assert (reason == "") == ok
            assert ok or (b == before and retry_after_s(b, cfg, now) > 0)
        elif step[0] == "ok":
            b = on_success(b, cfg, now)
        else:
            b = on_failure(b, cfg, now, "internal: boom")
        _check_consistent(b, cfg)
        assert b.opened_count - before.opened_count == (b.state == S.OPEN and before.state != S.OPEN)
