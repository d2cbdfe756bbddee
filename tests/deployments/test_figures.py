"""A release's request figures: the pure arithmetic (buckets, quantiles, windows) and their keeping
in a real Redis (totals, 5-second buckets)."""

from __future__ import annotations

import pytest
import redis

from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.figures import BOUNDS_MS, BUCKETS, Figures, Outcome, bucket_of, quantile


def counted(**latencies: int) -> tuple[int, ...]:
    """Buckets holding `n` requests at each latency: counted(b10=3) is 3 requests in bucket 10."""
    buckets = [0] * BUCKETS
    for name, n in latencies.items():
        buckets[int(name[1:])] = n
    return tuple(buckets)


@pytest.mark.parametrize(
    ("latency_ms", "bucket"), [(0.2, 0), (1, 0), (1.01, 1), (99, 11), (100, 11), (60_000, 26), (90_000, 27)]
)
def test_a_latency_falls_in_the_bucket_whose_upper_bound_holds_it(latency_ms: float, bucket: int) -> None:
    assert bucket_of(latency_ms) == bucket


def test_quantile_of_nothing_is_none() -> None:
    assert quantile((0,) * BUCKETS, 0.99) is None
    assert Figures().p99_ms is None
    assert Figures().error_rate is None
    assert Figures().rps is None


def test_quantile_interpolates_within_its_bucket() -> None:
    # 100 requests between 50 and 75 ms (bucket 10): the median is half way.
    assert quantile(counted(b10=100), 0.5) == pytest.approx(62.5)
    assert quantile(counted(b10=100), 0.99) == pytest.approx(74.75)


def test_p99_sees_the_slow_tail_and_p50_does_not() -> None:
    latencies = Figures(requests=100, buckets=counted(b5=98, b17=2))  # 98 at ≤10 ms, 2 at ≤1 s

    assert latencies.p50_ms is not None
    assert latencies.p50_ms <= 10
    assert latencies.p99_ms is not None
    assert 750 < latencies.p99_ms <= 1_000


def test_the_open_last_bucket_answers_its_lower_bound() -> None:
    assert quantile(counted(b27=5), 0.99) == BOUNDS_MS[-1]


def test_a_window_is_the_difference_of_two_totals() -> None:
    earlier = Figures(requests=10, errors=1, refused=2, buckets=counted(b3=10))
    now = Figures(requests=30, errors=4, refused=5, buckets=counted(b3=25, b9=5))

    window = now.minus(earlier, seconds=10)

    assert (window.requests, window.errors, window.refused) == (20, 3, 3)
    assert window.buckets == counted(b3=15, b9=5)
    assert window.error_rate == pytest.approx(0.15)
    assert window.rps == pytest.approx(2.0)


def test_a_total_that_went_backwards_counts_from_zero() -> None:
    """Redis lost the key (a restart without persistence): the window is what was counted since."""
    earlier = Figures(requests=50, errors=5, buckets=counted(b3=50))
    now = Figures(requests=4, errors=1, buckets=counted(b3=4))

    window = now.minus(earlier, seconds=5)

    assert (window.requests, window.errors) == (4, 1)
    assert window.buckets == counted(b3=4)


def test_plus_adds_every_counter() -> None:
    a = Figures(requests=2, errors=1, refused=1, buckets=counted(b1=2), seconds=5)
    b = Figures(requests=3, errors=0, refused=2, buckets=counted(b1=1, b2=2), seconds=5)

    total = a.plus(b)

    assert (total.requests, total.errors, total.refused) == (5, 1, 3)
    assert total.buckets == counted(b1=3, b2=2)


def test_fields_round_trip_and_leave_empty_buckets_out() -> None:
    original = Figures(requests=7, errors=2, refused=1, buckets=counted(b4=5, b20=2))

    fields = original.to_fields()

    assert fields == {"n": 7, "e": 2, "r": 1, "b4": 5, "b20": 2}
    assert Figures.from_fields(fields) == original
    assert Figures.from_fields({b"n": b"7", b"b4": b"7"}) == Figures(requests=7, buckets=counted(b4=7))


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


def test_record_counts_answers_errors_and_refusals_apart(client: redis.Redis) -> None:
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=12)
    figures.record(client, release_id=5, outcome=Outcome.OK, latency_ms=14)
    figures.record(client, release_id=5, outcome=Outcome.ERROR, latency_ms=900)
    figures.record(client, release_id=5, outcome=Outcome.REFUSED, latency_ms=1)
    figures.record(client, release_id=6, outcome=Outcome.OK, latency_ms=3)

    totals = figures.totals(client, [5, 6, 7])

    assert (totals[5].requests, totals[5].errors, totals[5].refused) == (3, 1, 1)
    assert totals[5].buckets == counted(b6=2, b17=1)  # the refusal has no latency
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
