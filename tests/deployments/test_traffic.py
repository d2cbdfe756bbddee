"""A deployment's traffic: the live split, routing by side and key, the fallback to the other side,
a request pinned to a release, refusals that say why and which release, and the figures each
request leaves in Redis. No device worker runs here (tests/deployments/live.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core import dispatch
from apps.core.redis_clients import redis_client
from apps.deployments import figures, traffic
from apps.deployments.domain.split import key_point
from apps.deployments.domain.states import DeploymentState, ReleaseState
from apps.deployments.models import Deployment, Release
from apps.models.models import ModelVersion
from apps.serving import inference
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from apps.serving.resilience import Bulkhead
from tests.deployments.factories import DeploymentFactory
from tests.deployments.live import ASK, placement_of, release_on, serving
from tests.serving.test_inference_faults import heard, loaded
from tests.serving.test_resilience import Holder

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("beats_current")]


def ask(deployment: Deployment, **options: Any) -> dict[str, Any]:
    fresh = traffic.routed_deployments().get(pk=deployment.pk)
    return traffic.infer(deployment=fresh, task=ASK["task"], data=ASK["input"], **options)


def refused(deployment: Deployment, **options: Any) -> inference.Refused:
    with pytest.raises(inference.Refused) as caught:
        ask(deployment, **options)
    return caught.value


def counted(release_id: int) -> tuple[int, int, int, int]:
    """(requests, errors, refused, rejected) recorded for the release."""
    total = figures.totals(redis_client(), [release_id])[release_id]
    return total.requests, total.errors, total.refused, total.rejected


def key_on(side: str, percent: int) -> str:
    """A key the split sends to `side` at the canary's share `percent`."""
    return next(k for i in range(1_000) if ((key_point(k := f"k{i}") < percent) == (side == "canary")))


def test_the_split_is_stable_alone_when_nothing_rolls_out() -> None:
    deployment, stable, _ = serving()

    split = traffic.live_split(deployment)

    assert (split.stable, split.canary, split.canary_percent) == (stable, None, 0)


@pytest.mark.parametrize("state", [ReleaseState.PROGRESSING, ReleaseState.PAUSED])
def test_a_release_rolling_out_with_a_share_is_the_canary(state: str) -> None:
    deployment, stable, _ = serving()
    canary = release_on(deployment, state=state, traffic_percent=30)

    split = traffic.live_split(deployment)

    assert (split.stable, split.canary, split.canary_percent) == (stable, canary, 30)


def test_a_release_without_a_share_yet_takes_no_traffic() -> None:
    deployment, _, _ = serving()
    release_on(deployment, state=ReleaseState.VERIFYING, traffic_percent=0)

    assert traffic.live_split(deployment).canary is None


def test_an_answer_says_which_deployment_side_release_and_version_served_it(asked: list[int]) -> None:
    deployment, stable, _ = serving()

    answer = ask(deployment)

    version = stable.model_version
    assert answer["result"] == {"text": str(placement_of(stable).pk)}
    assert answer["deployment"] == deployment.name
    assert answer["side"] == "stable"
    assert answer["release"] == {"id": stable.pk, "strategy": stable.strategy, "state": "promoted"}
    assert answer["version"] == {"id": version.pk, "number": version.number, "model": version.model.name}
    assert answer["placement"] == placement_of(stable).pk


def test_a_request_writes_nothing_to_the_database_and_counts_its_figures(asked: list[int]) -> None:
    deployment, stable, _ = serving()

    with CaptureQueriesContext(connection) as queries:
        ask(deployment)

    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries.captured_queries)
    total = figures.totals(redis_client(), [stable.pk])[stable.pk]
    assert (total.requests, total.errors, total.refused, total.rejected) == (1, 0, 0, 0)
    assert total.p50_ms is not None


def test_a_key_always_reaches_the_same_side_and_keys_reach_both(asked: list[int]) -> None:
    deployment, stable, canary = serving(canary_percent=50)
    assert canary is not None

    for key in ("k1", "k2", "k3"):
        served = {ask(deployment, key=key)["release"]["id"] for _ in range(4)}
        assert len(served) == 1
    by_key = {ask(deployment, key=f"user-{i}")["release"]["id"] for i in range(30)}
    assert by_key == {stable.pk, canary.pk}
    assert ask(deployment, key=key_on("canary", 50))["side"] == "canary"
    assert ask(deployment, key=key_on("stable", 50))["side"] == "stable"


def test_requests_without_a_key_follow_the_share(asked: list[int]) -> None:
    deployment, stable, canary = serving(canary_percent=20)
    assert canary is not None

    sides = [ask(deployment)["side"] for _ in range(100)]

    assert 5 <= sides.count("canary") <= 40
    assert counted(canary.pk)[0] + counted(stable.pk)[0] == 100


def test_a_side_with_nothing_loaded_falls_back_to_the_other(asked: list[int]) -> None:
    deployment, stable, _ = serving()
    canary = release_on(deployment, state=ReleaseState.PROGRESSING, traffic_percent=100, placed=False)

    answer = ask(deployment)

    assert (answer["side"], answer["release"]["id"]) == ("stable", stable.pk)
    assert counted(canary.pk) == (0, 0, 0, 0)


def test_a_stable_release_whose_replica_unloaded_is_woken_a_503_naming_it_and_counted_its_error(
    asked: list[int],
) -> None:
    """It answered 409 for good: only a /v1/ request woke a deployment scaled to zero."""
    deployment, stable, _ = serving()
    Placement.objects.filter(pk=placement_of(stable).pk).update(state=PlacementState.UNLOADED)

    refusal = refused(deployment)

    assert (refusal.status, refusal.error_class, refusal.retry_after_s) == (503, "not_loaded", 2)
    assert refusal.reason == (
        f"Deployment {deployment.name}, release #{stable.pk} (stable, {stable.model_version}): "
        "no replica is loaded now: waking, its replicas are loading; try again shortly."
    )
    assert list(stable.placements.order_by("pk").values_list("state", flat=True)) == [
        PlacementState.UNLOADED,
        PlacementState.REQUESTED,
    ]
    assert counted(stable.pk) == (1, 1, 0, 0)
    assert asked == []


def test_a_request_pinned_to_a_release_not_yet_taking_traffic_reaches_it(asked: list[int]) -> None:
    deployment, _, _ = serving()
    verifying = release_on(deployment, state=ReleaseState.VERIFYING, traffic_percent=0)

    answer = ask(deployment, release_id=verifying.pk)

    assert (answer["side"], answer["release"]["id"]) == ("canary", verifying.pk)
    assert asked == [placement_of(verifying).pk]


def test_a_request_pinned_to_the_stable_release_reaches_it_whatever_the_split(asked: list[int]) -> None:
    deployment, stable, _ = serving(canary_percent=100)

    answer = ask(deployment, release_id=stable.pk)

    assert (answer["side"], answer["release"]["id"]) == ("stable", stable.pk)


def test_a_pin_to_a_release_that_ended_or_is_anothers_is_a_400_naming_release(asked: list[int]) -> None:
    deployment, _, _ = serving()
    ended = release_on(deployment, state=ReleaseState.ABORTED)
    _, elsewhere, _ = serving()

    for release in (ended, elsewhere):
        refusal = refused(deployment, release_id=release.pk)
        assert (refusal.status, refusal.field) == (400, "release")
        assert f"Release {release.pk} is neither the stable release of {deployment.name}" in refusal.reason
        assert counted(release.pk) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (DeploymentState.PAUSED, "is paused: it serves no requests until it is activated again."),
        (DeploymentState.RETIRED, "is retired: it serves no requests."),
    ],
)
def test_a_paused_or_retired_deployment_is_a_409_saying_so(asked: list[int], state: str, why: str) -> None:
    deployment, stable, _ = serving()
    Deployment.objects.filter(pk=deployment.pk).update(state=state)

    refusal = refused(deployment)

    assert (refusal.status, refusal.reason) == (409, f"Deployment {deployment.name} {why}")
    assert asked == []
    assert counted(stable.pk) == (0, 0, 0, 0)


def test_a_deployment_with_nothing_live_is_a_409_saying_no_release_is_live() -> None:
    deployment = DeploymentFactory(state=DeploymentState.ACTIVE)

    refusal = refused(deployment)

    assert refusal.status == 409
    assert "no release is live yet" in refusal.reason


def test_a_task_the_version_does_not_answer_is_a_400_naming_task_counted_as_refused(asked: list[int]) -> None:
    deployment, stable, _ = serving()

    with pytest.raises(inference.Refused) as caught:
        traffic.infer(deployment=deployment, task="tensors", data={"inputs": {}})

    assert (caught.value.status, caught.value.field) == (400, "task")
    assert "answers: embed, generate" in caught.value.reason
    assert counted(stable.pk) == (0, 0, 1, 0)


def test_the_deployments_bulkhead_bounds_it_and_its_429_names_it_and_counts_refused(
    asked: list[int],
) -> None:
    deployment, stable, _ = serving(max_concurrency=1, max_queue=0)
    holder = Holder(Bulkhead(redis_client(), f"deployment {deployment.pk}", concurrency=1, queue=0))
    holder.start()
    assert holder.got.wait(5)
    try:
        refusal = refused(deployment)
    finally:
        holder.finish()

    assert (refusal.status, refusal.error_class) == (429, "bulkhead_full")
    assert f"deployment {deployment.pk} has 1 request running and 0 waiting" in refusal.reason
    assert f"release #{stable.pk}" in refusal.reason
    assert refusal.retry_after_s
    assert counted(stable.pk) == (0, 0, 1, 0)
    # The version's own bulkhead is not the deployment's: it was never touched.
    assert Bulkhead(
        redis_client(), f"version {stable.model_version.pk}", concurrency=1, queue=0
    ).occupancy() == (0, 0)


def failing(monkeypatch: pytest.MonkeyPatch, error_class: str) -> None:
    """Every request's worker answers with a failure of `error_class`."""

    def answer(name: str, *, args: Any = (), **_: Any) -> None:
        failure = {"ok": False, "error_class": error_class, "error": "the graph refused the inputs"}
        redis_client().rpush(args[2], json.dumps(failure))

    monkeypatch.setattr(dispatch, "send", answer)


@pytest.mark.parametrize(
    ("error_class", "status", "field", "canary_counted"),
    [
        # The model refused the input (too long, wrong fields) after the API's checks passed:
        # rejected, judged only beside stable's rate, never as the release's error. (Counted as
        # refused it judged nothing, not even a canary refusing what stable takes; as an error, a
        # caller's bad input aborted healthy canaries against the error-rate SLO.)
        pytest.param("bad_input", 400, "input", (0, 0, 0, 3), id="bad-input-rejected"),
        # The model failed on it (the cut-vocabulary variant's IndexError): the release's error.
        pytest.param("internal", 502, "", (3, 3, 0, 0), id="internal-error"),
    ],
)
def test_a_canary_whose_model_fails_the_input_counts_it_by_whose_doing_it_is(
    monkeypatch: pytest.MonkeyPatch,
    error_class: str,
    status: int,
    field: str,
    canary_counted: tuple[int, int, int, int],
) -> None:
    deployment, stable, canary = serving(canary_percent=100)
    assert canary is not None
    failing(monkeypatch, error_class)

    refusals = [refused(deployment) for _ in range(3)]

    assert {(r.status, r.error_class, r.field) for r in refusals} == {(status, error_class, field)}
    assert counted(canary.pk) == canary_counted
    assert counted(stable.pk) == (0, 0, 0, 0)


def test_a_task_stable_answers_and_the_canary_does_not_is_the_canarys_error(asked: list[int]) -> None:
    deployment, _, _ = serving()
    canary = release_on(deployment, state=ReleaseState.PROGRESSING, traffic_percent=100)
    ModelVersion.objects.filter(pk=canary.model_version_id).update(kind="embedding")  # no generate

    refusal = refused(deployment)

    assert (refusal.status, refusal.field) == (400, "task")
    assert counted(canary.pk) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    ("bound", "process_bound", "canary_counted"),
    [
        # The canary's device queue is full: the canary's error.
        pytest.param("MOC_SERVING_WAITING_PER_QUEUE", False, (1, 1, 0, 0), id="the-canarys-device-queue"),
        # This web server's own bound on waiting requests: refused, judging no release.
        pytest.param("MOC_SERVING_WAITING_PER_PROCESS", True, (0, 0, 1, 0), id="this-web-servers-own"),
    ],
)
def test_a_full_waiting_bound_is_the_canarys_error_only_when_it_is_the_canarys_queue(
    asked: list[int],
    settings: Any,
    bound: str,
    process_bound: bool,
    canary_counted: tuple[int, int, int, int],
) -> None:
    deployment, _, canary = serving(canary_percent=100)
    assert canary is not None
    setattr(settings, bound, 0)

    refusal = refused(deployment)

    assert (refusal.status, refusal.error_class, refusal.process_bound) == (503, "queue_busy", process_bound)
    assert counted(canary.pk) == canary_counted


def test_a_request_that_waited_out_its_time_for_the_shared_bulkhead_is_refused_not_an_error(
    asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow canary holding the deployment's slots made stable's requests time out waiting, and
    they counted as stable's errors: the relative bounds then let the slow canary through."""
    deployment, stable, _ = serving()
    waited = _slot_after(monkeypatch, seconds=stable_timeout(stable))

    refusal = refused(deployment)

    assert (refusal.status, refusal.error_class) == (504, "bulkhead_full")
    assert refusal.waited_s == waited
    assert counted(stable.pk) == (0, 0, 1, 0)


def test_the_latency_counted_leaves_out_the_wait_for_the_bulkheads_slot(
    asked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment, stable, _ = serving()
    _slot_after(monkeypatch, seconds=3.0)

    ask(deployment)

    total = figures.totals(redis_client(), [stable.pk])[stable.pk]
    assert total.requests == 1
    assert total.p99_ms is not None
    assert total.p99_ms < 1_000  # the 3 s "waited" for the slot is not the release's


def stable_timeout(release: Release) -> float:
    return inference.limits_for(release.model_version).timeout_s


def _slot_after(monkeypatch: pytest.MonkeyPatch, *, seconds: float) -> float:
    """The bulkhead gives its slot at once but says it waited `seconds` for it (the time a slow
    canary holding the slots would have cost); and the clock moves on as much."""
    real_slot = Bulkhead.slot
    real_clock = time.perf_counter
    shift = {"s": 0.0}

    @contextmanager
    def slot(self: Bulkhead, *, wait_s: float, lease_s: float) -> Iterator[float]:
        with real_slot(self, wait_s=wait_s, lease_s=lease_s):
            shift["s"] = seconds
            yield seconds

    monkeypatch.setattr(Bulkhead, "slot", slot)
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + shift["s"])
    return seconds


def test_a_failed_figures_write_never_fails_an_answered_request(
    asked: list[int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    deployment, stable, _ = serving()

    def redis_away(*_: Any, **__: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(figures, "record", redis_away)
    answer = ask(deployment)

    assert answer["release"]["id"] == stable.pk
    assert f"figures of release {stable.pk} not recorded: Connection refused" in caplog.text


def rolled_back(*, previous_loaded: bool) -> tuple[Deployment, Release, Release]:
    """A deployment whose promoted release was just rolled back to `previous`, unloaded long ago
    (or not); the rolled-back one is still loaded for its grace."""
    deployment, bad, _ = serving()
    previous = release_on(
        deployment, state=ReleaseState.PROMOTED, traffic_percent=100, placed=previous_loaded
    )
    Release.objects.filter(pk=bad.pk).update(
        state=ReleaseState.ROLLED_BACK,
        traffic_percent=0,
        previous_release=previous,
        promoted_at=timezone.now(),
        finished_at=timezone.now(),
    )
    Deployment.objects.filter(pk=deployment.pk).update(current_release=previous)
    return deployment, previous, bad


def test_a_rolled_back_release_answers_as_the_fallback_until_the_previous_one_is_loaded(
    asked: list[int],
) -> None:
    """The pointer moved to a release unloaded long ago, and every request got 409 not_loaded until
    it loaded again: an outage caused by the rollback itself."""
    deployment, previous, bad = rolled_back(previous_loaded=False)

    answer = ask(deployment)

    assert (answer["side"], answer["release"]["id"], answer["release"]["state"]) == (
        "fallback",
        bad.pk,
        "rolled_back",
    )
    assert counted(bad.pk) == (1, 0, 0, 0)
    assert counted(previous.pk) == (0, 0, 0, 0)

    # Once the previous release has a replica loaded, it answers again.
    placement = loaded(previous.model_version)
    heard(placement.device.queue)
    previous.placements.add(placement)

    assert (ask(deployment)["side"], ask(deployment)["release"]["id"]) == ("stable", previous.pk)


def test_a_release_rolled_back_before_it_was_promoted_is_never_a_fallback(asked: list[int]) -> None:
    deployment, previous, bad = rolled_back(previous_loaded=False)
    Release.objects.filter(pk=bad.pk).update(promoted_at=None)

    refusal = refused(deployment)

    assert (refusal.status, refusal.error_class) == (503, "not_loaded")  # the previous one is woken
    assert counted(previous.pk) == (1, 1, 0, 0)
    assert counted(bad.pk) == (0, 0, 0, 0)


def test_a_rolled_back_release_with_nothing_loaded_left_leaves_the_refusal_to_the_previous(
    asked: list[int],
) -> None:
    deployment, previous, bad = rolled_back(previous_loaded=False)
    Placement.objects.filter(pk=placement_of(bad).pk).update(state=PlacementState.UNLOADED)

    refusal = refused(deployment)

    assert (refusal.status, refusal.error_class) == (503, "not_loaded")
    assert f"release #{previous.pk} (stable" in refusal.reason
    assert counted(previous.pk) == (1, 1, 0, 0)


def test_a_requests_latency_leaves_out_its_wait_for_the_bulkheads_slot_and_is_never_negative() -> None:
    began = time.perf_counter() - 1.0

    assert 740 <= traffic.latency_ms(began, waited_s=0.25) < 1000
    assert 990 <= traffic.latency_ms(began) < 1250
    assert traffic.latency_ms(time.perf_counter(), waited_s=5.0) == 0.0
