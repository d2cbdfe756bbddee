"""A release's request figures: the pure arithmetic (buckets, quantiles, windows) and their keeping
in a real Redis (totals, 5-second buckets)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis
import redis.asyncio

from apps.core import redis_batch
from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.figures import (
    BOUNDS_MS,
    BUCKETS,
    PROMETHEUS_BOUNDS_MS,
    Figures,
    Outcome,
    bucket_of,
    increments,
    quantile,
    summed,
)


def counted(*latencies: tuple[float, int]) -> tuple[int, ...]:
    """Buckets holding `n` requests at each (latency ms, n)."""
    buckets = [0] * BUCKETS
    for latency, n in latencies:
        buckets[bucket_of(latency)] += n
    return tuple(buckets)


def alike(latency_ms: float, n: int = 100, errors: int = 0) -> Figures:
    """`n` requests that all took `latency_ms`, as record() counts them (counts and sums)."""
    buckets, sums = [0] * BUCKETS, [0.0] * BUCKETS
    buckets[bucket_of(latency_ms)] = n
    sums[bucket_of(latency_ms)] = latency_ms * n
    return Figures(requests=n, errors=errors, buckets=tuple(buckets), sums_ms=tuple(sums), seconds=60)


@pytest.mark.parametrize(
    ("latency_ms", "bound"),
    [(0.2, 1), (1, 1), (1.01, 1.1), (99, 100), (100, 100), (1_001, 1_100), (60_000, 60_000)],
)
def test_a_latency_falls_in_the_bucket_whose_upper_bound_holds_it(latency_ms: float, bound: float) -> None:
    assert BOUNDS_MS[bucket_of(latency_ms)] == bound


def test_past_the_last_bound_is_the_open_last_bucket() -> None:
    assert bucket_of(90_000) == BUCKETS - 1


def test_buckets_are_at_most_about_ten_percent_apart() -> None:
    ratios = [b / a for a, b in zip(BOUNDS_MS, BOUNDS_MS[1:], strict=False)]

    assert max(ratios) <= 1.112
    assert tuple(sorted(set(BOUNDS_MS))) == BOUNDS_MS


def test_the_exported_bounds_are_bounds_of_the_figures() -> None:
    """/metrics adds the finer buckets up into these: each must be a bound of the finer ones."""
    assert set(PROMETHEUS_BOUNDS_MS) <= set(BOUNDS_MS)
    assert len(PROMETHEUS_BOUNDS_MS) < 30


def test_quantile_of_nothing_is_none() -> None:
    assert quantile((0,) * BUCKETS, 0.99) is None
    assert Figures().p99_ms is None
    assert Figures().error_rate is None
    assert Figures().rps is None


@pytest.mark.parametrize("latency_ms", [997, 999, 1_001, 1_050, 1_100, 1_199, 4_321, 59_000])
def test_requests_that_all_take_the_same_time_read_within_five_percent_of_it(latency_ms: float) -> None:
    """With buckets 1.5x apart and interpolation across them, 100 requests at 1100 ms read as a p99
    of 1495 ms, and a canary 0.2% slower than stable read 50% slower."""
    figures_ = alike(latency_ms)

    assert figures_.p99_ms is not None
    assert latency_ms <= figures_.p99_ms <= latency_ms * 1.05
    assert figures_.p50_ms == pytest.approx(latency_ms)


def test_a_canary_a_fraction_slower_than_stable_reads_a_fraction_slower() -> None:
    stable, canary = alike(999), alike(1_001)

    assert stable.p99_ms is not None
    assert canary.p99_ms is not None
    assert canary.p99_ms / stable.p99_ms == pytest.approx(1_001 / 999, rel=1e-3)


def test_latencies_spread_over_their_bucket_read_within_its_width() -> None:
    """Spread evenly over 1000-1100 ms: the p99 is about 1099, never past the bucket's bound."""
    latencies = [1_000.5 + i for i in range(100)]
    buckets, sums = [0] * BUCKETS, [0.0] * BUCKETS
    for latency in latencies:
        buckets[bucket_of(latency)] += 1
        sums[bucket_of(latency)] += latency
    spread = Figures(requests=100, buckets=tuple(buckets), sums_ms=tuple(sums))

    assert spread.p99_ms is not None
    assert 1_090 <= spread.p99_ms <= 1_100
    assert spread.p50_ms == pytest.approx(1_050, abs=2)


def test_without_sums_the_quantile_interpolates_across_its_bucket() -> None:
    # 100 requests between 50 and 55 ms: the median half way.
    assert quantile(counted((52, 100)), 0.5) == pytest.approx(52.5)
    assert quantile(counted((52, 100)), 0.99) == pytest.approx(54.95)


def test_p99_sees_the_slow_tail_and_p50_does_not() -> None:
    latencies = Figures(requests=100, buckets=counted((8, 98), (900, 2)))

    assert latencies.p50_ms is not None
    assert latencies.p50_ms <= 10
    assert latencies.p99_ms is not None
    assert 820 < latencies.p99_ms <= 900


def test_the_open_last_bucket_answers_its_mean_else_its_lower_bound() -> None:
    assert alike(90_000, n=5).p99_ms == pytest.approx(90_000)
    assert quantile(counted((90_000, 5)), 0.99) == BOUNDS_MS[-1]


def test_a_window_is_the_difference_of_two_totals() -> None:
    earlier = Figures(requests=10, errors=1, refused=2, rejected=1, buckets=counted((4, 10)))
    now = Figures(requests=30, errors=4, refused=5, rejected=6, buckets=counted((4, 25), (40, 5)))

    window = now.minus(earlier, seconds=10)

    assert (window.requests, window.errors, window.refused, window.rejected) == (20, 3, 3, 5)
    assert window.buckets == counted((4, 15), (40, 5))
    assert window.error_rate == pytest.approx(0.15)
    assert window.rps == pytest.approx(2.0)


def test_rejected_input_is_no_error_and_has_its_own_rate_over_every_request_asked() -> None:
    """The rate of input the model refused is over every request that reached it (answered, failed
    or rejected); the error rate and latency are over the answered or failed ones alone."""
    f = Figures(requests=30, errors=3, refused=7, rejected=10, buckets=counted((4, 30)))

    assert (f.asked, f.error_rate, f.rejected_rate) == (40, pytest.approx(0.1), pytest.approx(0.25))
    assert Figures(rejected=3).rejected_rate == 1.0
    assert (Figures(rejected=3).error_rate, Figures().rejected_rate) == (None, None)


def test_a_windows_latency_sums_are_the_difference_too() -> None:
    window = alike(1_100, n=30).minus(alike(1_100, n=10), seconds=10)

    assert window.latency_sum_ms == pytest.approx(20 * 1_100)
    assert window.p99_ms == pytest.approx(1_100)


def test_a_total_that_went_backwards_counts_from_zero() -> None:
    """Redis lost the key (a restart without persistence): the window is what was counted since."""
    earlier = Figures(requests=50, errors=5, buckets=counted((4, 50)))
    now = Figures(requests=4, errors=1, buckets=counted((4, 4)))

    window = now.minus(earlier, seconds=5)

    assert (window.requests, window.errors) == (4, 1)
    assert window.buckets == counted((4, 4))


def test_a_total_whose_rejections_went_backwards_counts_from_zero() -> None:
    """A canary that rejects every input counts no requests: its rejections alone show the reset."""
    window = Figures(rejected=3).minus(Figures(rejected=40), seconds=5)

    assert (window.requests, window.rejected) == (0, 3)


def test_plus_adds_every_counter() -> None:
    a = Figures(requests=2, errors=1, refused=1, rejected=4, buckets=counted((1.05, 2)), seconds=5)
    b = Figures(requests=3, errors=0, refused=2, rejected=1, buckets=counted((1.05, 1), (1.15, 2)), seconds=5)

    total = a.plus(b)

    assert (total.requests, total.errors, total.refused, total.rejected) == (5, 1, 3, 5)
    assert total.buckets == counted((1.05, 3), (1.15, 2))


def test_summed_adds_parts_over_the_span_they_cover() -> None:
    total = summed([alike(10, n=3), alike(20, n=2)], seconds=20)

    assert (total.requests, total.seconds, total.rps) == (5, 20, 0.25)


def test_fields_round_trip_and_leave_empty_buckets_out() -> None:
    original = replace(alike(7.2, n=5), rejected=2)

    fields = original.to_fields()

    assert fields == {"n": 5, "e": 0, "r": 0, "i": 2, f"h{bucket_of(7.2)}": 5, f"s{bucket_of(7.2)}": 36.0}
    assert Figures.from_fields(fields, seconds=60) == original
    assert Figures.from_fields({b"n": b"7", b"h4": b"7", b"s4": b"9.5"}) == Figures(
        requests=7, buckets=counted((1.35, 7)), sums_ms=tuple(9.5 if i == 4 else 0.0 for i in range(BUCKETS))
    )


def test_a_baseline_stored_before_rejections_were_counted_reads_as_none_rejected() -> None:
    stored = {"n": 40, "e": 2, "r": 1, f"h{bucket_of(20)}": 40}
    now = Figures(requests=60, errors=2, rejected=5, buckets=counted((20, 60)))

    baseline = Figures.from_fields(stored)

    assert (baseline.requests, baseline.rejected) == (40, 0)
    assert (now.minus(baseline, seconds=30).requests, now.minus(baseline, seconds=30).rejected) == (20, 5)


def test_a_baseline_stored_in_the_coarser_layout_reads_as_nothing_counted() -> None:
    """A release's analysis_baseline written before the buckets were made finer ("b<i>" fields,
    other bounds): reading its buckets as the new ones would be wrong, so the step's window counts
    from zero."""
    old = {"n": 40, "e": 2, "r": 1, "b10": 38, "b17": 2}

    assert Figures.from_fields(old, seconds=30) == Figures(seconds=30)
    assert alike(50, n=12).minus(Figures.from_fields(old), seconds=30).requests == 12


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


def test_record_counts_answers_errors_refusals_and_rejections_apart(client: redis.Redis) -> None:
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=12)
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=14)
    figures.record(client, release_id=5, outcome=Outcome.ERROR, latency_ms=900)
    figures.record(client, release_id=5, outcome=Outcome.REFUSED, latency_ms=1)
    figures.record(client, release_id=5, outcome=Outcome.REJECTED, latency_ms=2)
    figures.record(client, release_id=5, outcome=Outcome.REJECTED, latency_ms=3)
    figures.record(client, release_id=6, outcome=Outcome.OK, latency_ms=3)

    totals = figures.totals(client, [5, 6, 7])

    assert (totals[5].requests, totals[5].errors, totals[5].refused, totals[5].rejected) == (3, 1, 1, 2)
    # Neither the refusal nor the rejections have a latency.
    assert totals[5].buckets == counted((12, 1), (14, 1), (900, 1))
    assert totals[5].latency_sum_ms == pytest.approx(12 + 14 + 900)
    assert totals[5].p99_ms == pytest.approx(900)
    assert totals[6].requests == 1
    assert totals[7] == Figures()


def test_record_keeps_its_keys_from_living_forever(client: redis.Redis) -> None:
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=12, at=1_000_002.0)

    assert 0 < client.ttl(f"{figures.PREFIX}5:total") <= figures.TOTAL_TTL_S
    assert 0 < client.ttl(f"{figures.PREFIX}5:1000000") <= figures.BUCKET_TTL_S


def test_series_gives_every_5_second_bucket_of_the_span_empty_ones_included(client: redis.Redis) -> None:
    t0 = 1_700_000_000.0  # a multiple of 5
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=10, at=t0 + 1)
    figures.record(client, release_id=5, outcome=Outcome.ERROR, latency_ms=10, at=t0 + 4.9)
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=10, at=t0 + 11)

    series = figures.series(client, [5, 6], since=t0 + 2, until=t0 + 14)

    assert [start for start, _ in series[5]] == [t0, t0 + 5, t0 + 10]
    assert [f.requests for _, f in series[5]] == [2, 0, 1]
    first = series[5][0][1]
    assert first.errors == 1
    assert first.rps == pytest.approx(0.4)
    assert [f.requests for _, f in series[6]] == [0, 0, 0]


def test_a_span_is_whole_buckets_up_to_the_one_still_filling() -> None:
    t0 = 1_700_000_000  # a multiple of 5

    assert figures.complete_span(60, t0 + 3.2) == (t0 - 60, t0)
    assert figures.complete_span(5, t0 + 4.9) == (t0 - 5, t0)
    assert figures.complete_span(7, t0) == (t0 - 5, t0)  # the nearest whole number of buckets
    assert figures.complete_span(1, t0) == (t0 - 5, t0)  # at least one


def test_recent_rates_are_over_the_seconds_their_buckets_cover(client: redis.Redis) -> None:
    """The span began partway into a bucket and took in the bucket still filling, yet the sum was
    divided by the nominal seconds: with seconds=5, about twice the real rate."""
    t0 = 1_700_000_000.0
    for i in range(10):  # 10 requests in the bucket before the one filling: 2 per second
        figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=10, at=t0 - 5 + i * 0.5)
    for i in range(6):  # and 6 already in the one filling
        figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=10, at=t0 + i * 0.1)

    buckets, totals, span = figures.recent(client, [5, 6], seconds=5, now=t0 + 0.7)

    assert span == 5
    assert [start for start, _ in buckets[5]] == [t0 - 5]
    assert (totals[5].requests, totals[5].rps) == (10, 2.0)
    assert (totals[6].requests, totals[6].seconds) == (0, 5)


# ---- serving figures: TTFT, ITL, queue wait, tokens, refusals by reason ----------------------


def test_a_request_adds_its_timings_tokens_and_no_refusal() -> None:
    counts, sums = increments(
        outcome=Outcome.OK, latency_ms=120, ttft_ms=30, itl_ms=8, tokens_out=12, queue_ms=2
    )

    assert counts == {
        "n": 1,
        f"h{bucket_of(120)}": 1,
        f"fh{bucket_of(30)}": 1,
        f"gh{bucket_of(8)}": 1,
        f"qh{bucket_of(2)}": 1,
        "o": 12,
    }
    assert sums == {
        f"s{bucket_of(120)}": 120,
        f"fs{bucket_of(30)}": 30,
        f"gs{bucket_of(8)}": 8,
        f"qs{bucket_of(2)}": 2,
    }


def test_a_refusal_counts_its_reason_and_no_timing() -> None:
    counts, sums = increments(outcome=Outcome.REFUSED, latency_ms=3, queue_ms=1, refusal="bulkhead_full")

    assert (counts, sums) == ({"r": 1, "x:bulkhead_full": 1}, {})


def test_a_request_without_tokens_measures_no_ttft_nor_itl() -> None:
    counts, _ = increments(outcome=Outcome.OK, latency_ms=9)

    assert counts == {"n": 1, f"h{bucket_of(9)}": 1}


def served(**timings: float) -> Figures:
    """One answered request's figures, as record() counts them."""
    counts, sums = increments(outcome=Outcome.OK, latency_ms=100, **timings)  # type: ignore[arg-type]
    return Figures.from_fields({**counts, **sums})


def test_serving_figures_survive_the_fields_they_are_stored_in() -> None:
    stored = Figures(
        requests=2,
        refused=3,
        tokens_out=40,
        ttft=served(ttft_ms=30).ttft,
        itl=served(itl_ms=7).itl,
        queue=served(queue_ms=4).queue,
        refusals={"bulkhead_full": 2, "worker_silent": 1},
    )

    again = Figures.from_fields(stored.to_fields())

    assert again == stored
    assert again.ttft.p50_ms == pytest.approx(30)
    assert (again.itl.count, again.queue.count) == (1, 1)


def test_a_window_of_serving_figures_is_the_difference_of_two_totals() -> None:
    earlier = Figures(tokens_out=10, ttft=served(ttft_ms=30).ttft, refusals={"bulkhead_full": 1})
    now = earlier.plus(
        Figures(tokens_out=25, ttft=served(ttft_ms=300).ttft, refusals={"bulkhead_full": 2, "queue_busy": 1})
    )

    window = now.minus(earlier, seconds=10)

    assert window.tokens_out == 25
    assert window.ttft.count == 1
    assert window.ttft.p99_ms == pytest.approx(300)
    assert window.refusals == {"bulkhead_full": 2, "queue_busy": 1}


@pytest.mark.parametrize(("limit_ms", "within"), [(5, 0), (10, 50), (30, 50), (500, 100), (90_000, 100)])
def test_within_counts_the_samples_at_most_a_limit(limit_ms: float, within: float) -> None:
    histogram = alike(10, n=50).plus(alike(400, n=50)).latency

    assert histogram.within(limit_ms) == pytest.approx(within)


def test_record_keeps_ttft_itl_queue_tokens_and_refusals(client: redis.Redis) -> None:
    figures.record(
        client,
        release_id=5,
        outcome=Outcome.OK,
        latency_ms=200,
        ttft_ms=40,
        itl_ms=9,
        tokens_out=16,
        queue_ms=3,
    )
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=50)  # no tokens: an embedding
    figures.record(client, release_id=5, outcome=Outcome.REFUSED, latency_ms=0, refusal="bulkhead_full")
    figures.record(client, release_id=5, outcome=Outcome.REFUSED, latency_ms=0)

    total = figures.totals(client, [5])[5]

    assert (total.requests, total.refused, total.tokens_out) == (2, 2, 16)
    assert (total.ttft.count, total.itl.count, total.queue.count) == (1, 1, 1)
    assert total.ttft.p50_ms == pytest.approx(40)
    assert total.itl.p50_ms == pytest.approx(9)
    assert total.refusals == {"bulkhead_full": 1}


def test_a_batch_writes_the_same_figures_as_recording_each_request(client: redis.Redis) -> None:
    at = 1_700_000_003.0
    asks = [
        {"outcome": Outcome.OK, "latency_ms": 200.125, "ttft_ms": 40.5, "itl_ms": 9.25, "tokens_out": 16},
        {"outcome": Outcome.OK, "latency_ms": 210.5, "ttft_ms": 41.0, "queue_ms": 3.0, "at": at + 6},
        {"outcome": Outcome.ERROR, "latency_ms": 900.0, "queue_ms": 12.5},
        {"outcome": Outcome.REFUSED, "latency_ms": 0, "refusal": "worker_silent", "at": at + 61},
        {"outcome": Outcome.REJECTED, "latency_ms": 3.0},
    ]
    batch = figures.Batch()
    for ask in asks:
        request = {"at": at, **ask}
        figures.record(client, release_id=5, **request)  # type: ignore[arg-type]
        batch.add(release_id=6, **request)  # type: ignore[arg-type]
        batch.add(release_id=7, **request)  # type: ignore[arg-type]

    commands = batch.take()
    redis_batch.run(client, commands)

    totals = figures.totals(client, [5, 6, 7])
    assert totals[6] == totals[5] == totals[7]
    assert (totals[6].requests, totals[6].errors, totals[6].refused, totals[6].rejected) == (3, 1, 1, 1)
    series = figures.series(client, [5, 6, 7], since=at, until=at + 61)
    assert series[6] == series[5] == series[7]
    minutes = [int(at) // 60 * 60, int(at + 61) // 60 * 60]
    assert figures.active(client, minutes) == {minutes[0]: {5, 6, 7}, minutes[1]: {5, 6, 7}}
    # Each key written once, its requests summed: per release its total and three buckets, and the
    # two minutes' active sets.
    expired = [args[0] for method, args in commands if method == "expire"]
    assert len(expired) == len(set(expired)) == 2 * 4 + 2
    assert not batch
    assert batch.take() == []
