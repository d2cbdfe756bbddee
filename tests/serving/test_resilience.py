"""Breakers and bulkheads against the session's real Redis, with threads standing in for web processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from apps.core.redis_clients import redis_client
from apps.serving import resilience
from apps.serving.domain.breaker import Breaker, BreakerConfig, BreakerState
from apps.serving.domain.errors import ErrorClass
from apps.serving.resilience import BREAKER_PREFIX, Breakers, Bulkhead, BulkheadFull

S = BreakerState
CFG = BreakerConfig(failure_threshold=3, open_s=30.0, half_open_probes=1)
T0 = 1_795_000_000.0
PID = 41


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


def _fail(breakers: Breakers, n: int, now: float = T0) -> Breaker:
    for _ in range(n):
        last = breakers.record(PID, CFG, now=now, error_class=ErrorClass.TIMEOUT, error="no answer in 10 s")
    return last


def _commands_run(client: redis.Redis) -> dict[str, int]:
    """Commands the server ran since the last CONFIG RESETSTAT, less the bookkeeping ones."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


def test_a_closed_breakers_admit_is_one_read_and_writes_nothing(client: redis.Redis) -> None:
    breakers = Breakers(client)
    client.config_resetstat()

    admission = breakers.admit(PID, CFG, now=T0)

    assert (admission.ok, admission.state, admission.reason, admission.retry_after_s) == (
        True,
        S.CLOSED,
        "",
        0,
    )
    assert _commands_run(client) == {"hgetall": 1}
    assert client.dbsize() == 0


def test_a_request_through_a_closed_breaker_reads_it_once_and_writes_nothing(client: redis.Redis) -> None:
    breakers = Breakers(client)
    # Once through, so the server holds the scripts, as it does for a warm process.
    warm = breakers.read([PID])
    breakers.record(
        PID, CFG, now=T0, error_class=None, seen=breakers.admit(PID, CFG, now=T0, seen=warm[PID]).seen
    )
    client.config_resetstat()

    seen = breakers.read([PID, PID + 1])
    admission = breakers.admit(PID, CFG, now=T0, seen=seen[PID])
    breakers.record(PID, CFG, now=T0 + 1, error_class=None, seen=admission.seen)

    assert admission.ok
    # One pipeline reads each candidate's breaker once; the success only checks the version.
    assert _commands_run(client) == {"hgetall": 2, "evalsha": 1, "hget": 1}
    assert client.dbsize() == 0


def test_a_success_recorded_from_a_stale_read_still_clears_failures_others_recorded(
    client: redis.Redis,
) -> None:
    breakers = Breakers(client)
    admission = breakers.admit(PID, CFG, now=T0, seen=breakers.read([PID])[PID])
    _fail(breakers, 2)  # other processes' failures, after this request was admitted

    after = breakers.record(PID, CFG, now=T0 + 1, error_class=None, seen=admission.seen)
    _fail(breakers, 1)

    assert after.failures == 0
    assert breakers.get([PID])[PID].state == S.CLOSED  # 1 failure in a row, not 3


def test_a_failure_recorded_from_a_stale_read_still_counts_the_failures_others_recorded(
    client: redis.Redis,
) -> None:
    breakers = Breakers(client)
    stale = breakers.read([PID])[PID]
    _fail(breakers, 2)  # another process's failures, after this one read the breaker

    after = breakers.record(PID, CFG, now=T0, error_class=ErrorClass.TIMEOUT, error="no answer", seen=stale)

    assert (after.state, after.failures) == (S.OPEN, 3)
    assert breakers.get([PID])[PID] == after


def test_a_success_with_nothing_to_clear_writes_nothing(client: redis.Redis) -> None:
    Breakers(client).record(PID, CFG, now=T0, error_class=None)

    assert client.dbsize() == 0


def test_failures_recorded_by_one_process_open_the_breaker_for_another(client: redis.Redis) -> None:
    web_a, web_b = Breakers(redis_client()), Breakers(redis_client())

    _fail(web_a, 3)
    admission = web_b.admit(PID, CFG, now=T0 + 18.5)

    assert (admission.ok, admission.state, admission.retry_after_s) == (False, S.OPEN, pytest.approx(11.5))
    assert admission.reason == (
        "circuit open after 3 failures in a row (last: timeout: no answer in 10 s); next probe in 12 s"
    )


def test_a_failure_is_kept_with_its_class(client: redis.Redis) -> None:
    breakers = Breakers(client)

    breakers.record(PID, CFG, now=T0, error_class=ErrorClass.OUT_OF_MEMORY, error="CUDA out of memory")

    assert breakers.get([PID])[PID].last_error == "out_of_memory: CUDA out of memory"


def test_a_bad_request_does_not_count_against_the_placement(client: redis.Redis) -> None:
    breakers = Breakers(client)
    _fail(breakers, 2)

    after = breakers.record(PID, CFG, now=T0, error_class=ErrorClass.BAD_INPUT, error="prompt too long")
    _fail(breakers, 2)

    assert (after.failures, breakers.admit(PID, CFG, now=T0).ok) == (0, True)


def test_after_open_s_one_probe_goes_and_the_next_caller_waits_for_it(client: redis.Redis) -> None:
    web_a, web_b = Breakers(redis_client()), Breakers(redis_client())
    _fail(web_a, 3)

    probe = web_a.admit(PID, CFG, now=T0 + 30)
    other = web_b.admit(PID, CFG, now=T0 + 30.1)

    assert (probe.ok, probe.state) == (True, S.HALF_OPEN)
    assert (other.ok, other.state, other.retry_after_s) == (False, S.HALF_OPEN, 1.0)


def test_a_probe_that_succeeds_closes_the_breaker_for_everyone(client: redis.Redis) -> None:
    web_a, web_b = Breakers(redis_client()), Breakers(redis_client())
    _fail(web_a, 3)
    web_a.admit(PID, CFG, now=T0 + 30)

    web_a.record(PID, CFG, now=T0 + 30.5, error_class=None)

    assert web_b.admit(PID, CFG, now=T0 + 30.6).ok
    assert web_b.get([PID])[PID] == Breaker(last_error="timeout: no answer in 10 s", opened_count=1)


def test_a_probe_that_fails_opens_it_again(client: redis.Redis) -> None:
    breakers = Breakers(client)
    _fail(breakers, 3)
    breakers.admit(PID, CFG, now=T0 + 30)

    after = breakers.record(PID, CFG, now=T0 + 31, error_class=ErrorClass.DEVICE_LOST, error="GPU is lost")

    assert (after.state, after.opened_at, after.opened_count) == (S.OPEN, T0 + 31, 2)
    assert not breakers.admit(PID, CFG, now=T0 + 31 + 29).ok


def test_failures_recorded_at_once_are_all_counted(client: redis.Redis) -> None:
    cfg = BreakerConfig(failure_threshold=1000)

    def fail(_: int) -> None:
        Breakers(redis_client()).record(PID, cfg, now=T0, error_class=ErrorClass.INTERNAL)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(fail, range(64)))

    assert Breakers(client).get([PID])[PID].failures == 64


def test_get_only_reads_and_calls_unknown_breakers_closed(client: redis.Redis) -> None:
    breakers = Breakers(client)
    _fail(breakers, 3)
    client.config_resetstat()

    found = breakers.get([PID, 7])

    assert (found[PID].state, found[7]) == (S.OPEN, Breaker())
    assert _commands_run(client) == {"hgetall": 2}


def test_forget_drops_an_unloaded_placements_breaker(client: redis.Redis) -> None:
    breakers = Breakers(client)
    _fail(breakers, 3)

    breakers.forget(PID)

    assert client.exists(f"{BREAKER_PREFIX}{PID}") == 0
    assert breakers.admit(PID, CFG, now=T0).ok


def test_breaker_state_expires_when_nobody_forgets_it(client: redis.Redis) -> None:
    _fail(Breakers(client), 1)

    assert 0 < client.ttl(f"{BREAKER_PREFIX}{PID}") <= 86_400


# Bulkheads


def _bulkhead(client: redis.Redis, concurrency: int, queue: int) -> Bulkhead:
    return Bulkhead(client, "version 12", concurrency=concurrency, queue=queue)


def _pass_through(bulkhead: Bulkhead, *, wait_s: float) -> None:
    """A request that takes a slot and gives it straight back."""
    with bulkhead.slot(wait_s=wait_s, lease_s=30):
        pass


def _wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


class Holder(threading.Thread):
    """One request: takes a slot, then holds it until told to let go."""

    def __init__(self, bulkhead: Bulkhead, wait_s: float = 10.0, lease_s: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.bulkhead, self.wait_s, self.lease_s = bulkhead, wait_s, lease_s
        self.got = threading.Event()
        self.let_go = threading.Event()
        self.refused: BulkheadFull | None = None

    def run(self) -> None:
        try:
            with self.bulkhead.slot(wait_s=self.wait_s, lease_s=self.lease_s):
                self.got.set()
                self.let_go.wait(10)
        except BulkheadFull as exc:
            self.refused = exc

    def finish(self) -> None:
        self.let_go.set()
        self.join(10)


def test_no_more_than_concurrency_requests_run_at_once(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=3, queue=30)
    lock = threading.Lock()
    inside, most = 0, 0

    def request(_: int) -> None:
        nonlocal inside, most
        with bulkhead.slot(wait_s=10, lease_s=30):
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.02)
            with lock:
                inside -= 1

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(request, range(24)))

    assert most == 3
    assert bulkhead.occupancy() == (0, 0)


def test_a_full_queue_refuses_at_once_with_retry_after(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=1, queue=0)

    with bulkhead.slot(wait_s=5, lease_s=30):
        started = time.monotonic()
        with pytest.raises(BulkheadFull) as refused:
            _pass_through(bulkhead, wait_s=5)
        took = time.monotonic() - started

    assert took < 0.5
    assert refused.value.reason == "version 12 has 1 request running and 0 waiting"
    assert refused.value.retry_after_s >= 1


def test_retry_after_grows_with_the_queue_and_the_time_slots_are_held(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=2, queue=4)
    for _ in range(2):
        with bulkhead.slot(wait_s=1, lease_s=30):
            time.sleep(0.5)
    holders = [Holder(bulkhead) for _ in range(6)]
    for holder in holders:
        holder.start()
    _wait_for(lambda: bulkhead.occupancy() == (2, 4))

    with pytest.raises(BulkheadFull) as refused:
        _pass_through(bulkhead, wait_s=1)

    for holder in holders:
        holder.let_go.set()
    for holder in holders:
        holder.join(10)
    # (4 waiting + this one) served 2 at a time, about 0.5 s each: 1.25 s, rounded up
    assert refused.value.retry_after_s == 2


def test_a_caller_that_may_not_wait_takes_no_place_in_the_queue(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=1, queue=4)

    with bulkhead.slot(wait_s=5, lease_s=30), pytest.raises(BulkheadFull):
        _pass_through(bulkhead, wait_s=0)

    assert bulkhead.occupancy() == (0, 0)


def test_waiters_get_freed_slots_in_the_order_they_came(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=1, queue=5)
    first = Holder(bulkhead)
    first.start()
    first.got.wait(5)
    order: list[int] = []

    def request(n: int) -> None:
        with bulkhead.slot(wait_s=10, lease_s=30):
            order.append(n)
            time.sleep(0.01)

    waiters = []
    for n in range(5):
        waiters.append(threading.Thread(target=request, args=(n,), daemon=True))
        waiters[-1].start()
        _wait_for(lambda n=n: bulkhead.occupancy() == (1, n + 1))
        # Staggered, so the waiter that happens to be woken first is often not the oldest.
        time.sleep(0.023)
    first.finish()
    for waiter in waiters:
        waiter.join(10)

    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_whose_wait_runs_out_leaves_the_queue(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=1, queue=1)
    holder = Holder(bulkhead)
    holder.start()
    holder.got.wait(5)

    started = time.monotonic()
    with pytest.raises(BulkheadFull) as refused:
        _pass_through(bulkhead, wait_s=0.3)
    waited = time.monotonic() - started
    occupancy = bulkhead.occupancy()
    holder.finish()

    assert 0.3 <= waited < 2.0
    assert refused.value.reason == "waited 0.3 s for a slot; version 12 has 1 request running and 0 waiting"
    assert occupancy == (1, 0)


def test_a_release_wakes_the_waiter_rather_than_leaving_it_to_poll(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resilience, "POLL_S", 5.0)
    bulkhead = _bulkhead(client, concurrency=1, queue=1)
    holder = Holder(bulkhead)
    holder.start()
    holder.got.wait(5)

    def let_go_once_queued() -> None:
        _wait_for(lambda: bulkhead.occupancy() == (1, 1))
        holder.let_go.set()

    threading.Thread(target=let_go_once_queued, daemon=True).start()
    with bulkhead.slot(wait_s=10, lease_s=30) as waited:
        pass

    assert 0 < waited < 1.0


def test_a_lease_never_released_stops_counting_when_it_expires(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=1, queue=1)
    # A process that died mid-request: it took the slot and never gave it back.
    abandoned = bulkhead.slot(wait_s=1, lease_s=0.3)
    abandoned.__enter__()

    with bulkhead.slot(wait_s=5, lease_s=30) as waited:
        inside = bulkhead.occupancy()

    assert waited < 2.0
    assert inside == (1, 0)


def test_occupancy_does_not_count_expired_leases(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=2, queue=0)
    abandoned = bulkhead.slot(wait_s=1, lease_s=0.05)
    abandoned.__enter__()

    time.sleep(0.1)

    assert bulkhead.occupancy() == (0, 0)


def test_bulkheads_of_two_versions_do_not_share_slots(client: redis.Redis) -> None:
    one = Bulkhead(client, "version 1", concurrency=1, queue=0)
    two = Bulkhead(client, "version 2", concurrency=1, queue=0)

    with one.slot(wait_s=0, lease_s=30), two.slot(wait_s=0, lease_s=30):
        assert (one.occupancy(), two.occupancy()) == ((1, 0), (1, 0))


def test_a_flood_refuses_exactly_the_excess_and_leaks_no_slot(client: redis.Redis) -> None:
    bulkhead = _bulkhead(client, concurrency=4, queue=8)
    let_go = threading.Event()
    lock = threading.Lock()
    served, refused, failed = [], [], []

    def request(n: int) -> None:
        try:
            with bulkhead.slot(wait_s=20, lease_s=60):
                let_go.wait(20)
            outcome = served
        except BulkheadFull:
            outcome = refused
        except Exception as exc:
            outcome = failed
            n = exc
        with lock:
            outcome.append(n)

    threads = [threading.Thread(target=request, args=(n,), daemon=True) for n in range(200)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: len(refused) == 188, timeout=20)
    full = bulkhead.occupancy()
    let_go.set()
    for thread in threads:
        thread.join(20)

    assert full == (4, 8)
    assert (len(served), len(refused), failed) == (12, 188, [])
    assert bulkhead.occupancy() == (0, 0)


@pytest.mark.parametrize(("concurrency", "queue"), [(0, 1), (1, -1)])
def test_an_impossible_bulkhead_is_refused(client: redis.Redis, concurrency: int, queue: int) -> None:
    with pytest.raises(ValueError, match="impossible bulkhead"):
        Bulkhead(client, "version 1", concurrency=concurrency, queue=queue)
