"""Rollouts end to end, on real processes: a device worker (simulated GPU, thread pool) serving the
demo LM and its bad variants (apps/models/demo/variants.py, versions 2 and 3 of demo-gpt2), a
default worker making the verification runs and the ticks they send, MOC's gunicorn as
MOC_PUBLIC_URL (the api_endpoint, security and monitoring checks call it), and a steady load
thread asking the deployment through POST /api/v1/deployments/<name>/infer/, which keeps every
answer and who gave it (tests/integration/load.py).

The beat's part (releases_advance every 2 s, which moves a canary past its pause and judges its
steps) is played by this process: every wait below calls rollout.advance_all() each half second,
the function that task calls, rather than running celery beat with all its other schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apps.core import services as core_services
from apps.core.domain.roles import Role
from apps.core.redis_clients import redis_client
from apps.deployments import rollout, services
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.states import ReleaseState
from apps.deployments.domain.strategy import Strategy
from apps.deployments.models import CheckResult, Deployment, Release, ReleaseEvent
from apps.fleet.models import Device
from apps.models import demo
from apps.models.demo import variants
from apps.models.models import ModelVersion
from apps.serving.domain.breaker import BreakerState
from apps.serving.domain.states import PlacementState
from apps.serving.resilience import Breakers
from tests.integration.load import Load
from tests.integration.releases import register_demo
from tests.integration.test_dead_worker import gunicorn  # noqa: F401 (a fixture)
from tests.procs import Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-rollout"
QUEUE = f"gpu.{NODE}.0"
R, P = ReleaseState, PlacementState
SETTLED = {R.PROMOTED, R.PAUSED, R.ABORTED, R.ROLLED_BACK, R.FAILED, R.CANCELLED}
# Every check runs on every release; these are the ones whose failure stops it here. The slow
# version is the only other one that answers, and the performance check (the same probe timed
# alternately on it and on stable's loaded replica, medians compared) stops it before traffic
# moves, so it is not required: the tests watch what happens past verification. The failing version fails
# every check that asks it something, so its canary requires none of those.
ASKING = {CheckName.HEALTH, CheckName.API_ENDPOINT, CheckName.PERFORMANCE, CheckName.QUALITY}
REQUIRED = [name.value for name in CheckName if name != CheckName.PERFORMANCE]


@dataclass
class Stack:
    base: str
    secret: str
    versions: dict[str, ModelVersion]
    operator: Any


@pytest.fixture
def stack(
    gunicorn: str,  # noqa: F811 (the fixture imported above)
    start_worker: Callable[..., Process],
    demo_models: Path,
    demo_variants: Path,
    settings: Any,
    make_user: Callable[..., Any],
) -> Stack:
    roots = [str(demo_models), str(demo_variants)]
    settings.MOC_MODEL_ROOTS = roots
    versions = register_demo(demo_root=demo_models, variants_root=demo_variants)
    env = {"MOC_MODEL_ROOTS": ",".join(roots)}
    start_worker(
        queues=QUEUE,
        pool="threads",
        name="serve0",
        concurrency=4,
        MOC_DEVICES="sim:1x24GiB",
        MOC_NODE_NAME=NODE,
        **env,
    )
    start_worker(
        queues="default", pool="threads", name="default0", concurrency=2, MOC_PUBLIC_URL=gunicorn, **env
    )
    wait_until(
        lambda: Device.objects.filter(node__name=NODE).exists(), 30, "the worker to register its device"
    )
    operator = make_user(Role.OPERATOR, "rollout-operator")
    _, secret = core_services.api_key_create(
        owner=operator, name="load", role=Role.OPERATOR, acting_role=Role.OPERATOR
    )
    return Stack(gunicorn, secret, versions, operator)


def ticking_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """wait_until, with the beat's work (rollout.advance_all) done in this process each turn."""

    def turn() -> bool:
        rollout.advance_all()
        return check()

    wait_until(turn, timeout, what, interval=0.5)


def settled(release: Release, timeout: float = 120) -> Release:
    def done() -> bool:
        release.refresh_from_db()
        return release.state in SETTLED

    ticking_until(done, timeout, f"release {release.pk} to settle")
    return release


def deployment(stack: Stack, name: str, **fields: Any) -> Deployment:
    """A staging deployment of demo-gpt2 on the test's device, bounded for a test: small windows,
    a short grace; `fields` override."""
    values: dict[str, Any] = {
        "registered_model": stack.versions[demo.BASE].model,
        "node": NODE,
        "replicas": 1,
        "canary_steps": [50, 100],
        "step_pause_s": 1,
        "step_timeout_s": 20,
        "min_samples": 8,
        "abort_grace_s": 3,
        "blue_green_keep_s": 120,
        "required_checks": REQUIRED,
        **fields,
    }
    return services.deployment_create(name=name, created_by=stack.operator, **values)


def release(stack: Stack, target: Deployment, version: str, strategy: Strategy) -> Release:
    return services.release_create(
        deployment=target,
        model_version=stack.versions[version],
        strategy=strategy,
        created_by=stack.operator,
    )


def live(stack: Stack, target: Deployment) -> Release:
    """The demo LM released (recreate) and promoted: the stable release the tests start from."""
    first = settled(release(stack, target, demo.BASE, Strategy.RECREATE))
    assert first.state == R.PROMOTED, f"{first.reason}; checks: {_checks(first)}"
    return first


def _checks(of: Release) -> list[tuple[str, str, str]]:
    return list(CheckResult.objects.filter(run__release=of).values_list("name", "status", "reason"))


def _analysis_events(of: Release) -> list[ReleaseEvent]:
    return list(of.events.filter(kind="analysis").order_by("at", "id"))


def _unloaded(of: Release, timeout: float = 30) -> None:
    def gone() -> bool:
        return not of.placements.exclude(state__in=[P.UNLOADED, P.FAILED, P.LOST]).exists()

    ticking_until(gone, timeout, f"release {of.pk}'s replicas to be unloaded")


def test_a_canary_of_the_version_that_fails_its_requests_is_aborted_by_analysis_and_unloaded(
    stack: Stack,
) -> None:
    required = [name for name in REQUIRED if name not in ASKING]
    target = deployment(stack, "itest-failing", required_checks=required, slo_error_rate=0.05)
    stable = live(stack, target)

    with Load(stack.base, stack.secret, target.name) as load:
        canary = settled(release(stack, target, variants.FAILING, Strategy.CANARY))
        aborted_at = canary.finished_at.timestamp()
        placement = canary.placements.get()
        held = placement.state
        breaker = Breakers(redis_client()).get([placement.pk])[placement.pk]
        ticking_until(lambda: len(load.since(aborted_at + 0.5)) >= 10, 30, "answers after the abort")

    assert canary.state == R.ABORTED, canary.reason
    assert canary.reason.startswith("analysis failed at 50%: error_rate"), canary.reason
    assert canary.traffic_percent == 0
    verdicts = _analysis_events(canary)
    assert verdicts[-1].cause == ReleaseEvent.Cause.ANALYSIS
    assert verdicts[-1].details["outcome"] == "failed"
    # Its verification let it through (the asking checks were not required) but saw it fail.
    assert dict((n, s) for n, s, _ in _checks(canary))[CheckName.HEALTH] == CheckStatus.FAIL
    # What the worker did with it: an error answer naming its class, the placement still loaded,
    # its breaker counting.
    failures = [a for a in load.answers if a.status != 200]
    assert failures
    assert {(a.status, a.error) for a in failures} <= {(502, "internal"), (503, "breaker_open")}
    # Once open, the breaker's refusals quote the failure that opened it.
    assert all("index out of range" in a.detail for a in failures)
    assert all(f"release #{canary.pk}" in a.detail for a in failures)
    assert held == P.LOADED
    assert breaker.failures > 0 or breaker.state != BreakerState.CLOSED
    assert "index out of range" in breaker.last_error
    # Traffic back to stable at once: everything sent after the abort is answered by it.
    after = load.since(aborted_at + 0.5)
    assert {(a.status, a.release) for a in after} == {(200, stable.pk)}
    target.refresh_from_db()
    assert target.current_release_id == stable.pk
    _unloaded(canary)


def test_a_canary_of_the_much_slower_version_is_aborted_on_its_p99_against_stable(stack: Stack) -> None:
    target = deployment(stack, "itest-slow")
    stable = live(stack, target)

    with Load(stack.base, stack.secret, target.name) as load:
        canary = settled(release(stack, target, variants.SLOW, Strategy.CANARY))
        aborted_at = canary.finished_at.timestamp()
        ticking_until(lambda: len(load.since(aborted_at + 0.5)) >= 10, 30, "answers after the abort")

    assert canary.state == R.ABORTED, canary.reason
    assert canary.reason.startswith("analysis failed at 50%: p99_ms"), canary.reason
    assert "relative limit" in canary.reason
    metric = next(m for m in _analysis_events(canary)[-1].details["metrics"] if m["name"] == "p99_ms")
    print(f"\ncanary p99 {metric['value']:.1f} ms, stable {metric['stable_value']:.1f} ms")
    assert metric["value"] > metric["thresholds"]["relative"]
    assert all(a.status == 200 for a in load.answers), {(a.status, a.error) for a in load.answers}
    assert {a.release for a in load.answers} == {stable.pk, canary.pk}
    assert {a.release for a in load.since(aborted_at + 0.5)} == {stable.pk}
    _unloaded(canary)


def test_blue_green_switches_and_rolls_back_without_a_failed_request(stack: Stack) -> None:
    target = deployment(stack, "itest-bluegreen")
    blue = live(stack, target)
    blue_placement = blue.placements.get(state=P.LOADED)

    with Load(stack.base, stack.secret, target.name) as load:
        green = settled(release(stack, target, variants.SLOW, Strategy.BLUE_GREEN))
        assert green.state == R.PROMOTED, f"{green.reason}; checks: {_checks(green)}"
        switched_at = green.promoted_at.timestamp()
        ticking_until(lambda: len(load.since(switched_at + 0.5)) >= 10, 30, "answers from green")
        green = rollout.release_rollback(release=green, by=stack.operator, reason="test: back to blue")
        rolled_back_at = green.finished_at.timestamp()
        ticking_until(lambda: len(load.since(rolled_back_at + 0.5)) >= 10, 30, "answers after the rollback")

    answers = load.answers
    assert {(a.status, a.error) for a in answers} == {(200, "")}, "no failed request, switch or rollback"
    numbers = [a.version for a in answers]
    flips = [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if a != b]
    blue_number, green_number = blue.model_version.number, green.model_version.number
    assert flips[0] == (blue_number, green_number)
    assert flips[-1] == (green_number, blue_number)
    assert {a.version for a in load.since(switched_at + 0.5) if a.began < rolled_back_at} == {green_number}
    assert {a.version for a in load.since(rolled_back_at + 0.5)} == {blue_number}
    # Blue stayed resident through the window: the rollback was a pointer flip, not a reload.
    blue_placement.refresh_from_db()
    assert blue_placement.state == P.LOADED
    target.refresh_from_db()
    assert target.current_release_id == blue.pk
    assert green.state == R.ROLLED_BACK


def test_a_canary_step_without_enough_requests_is_inconclusive_and_pauses(stack: Stack) -> None:
    target = deployment(stack, "itest-quiet", step_pause_s=0, step_timeout_s=2, min_samples=5)
    live(stack, target)

    canary = settled(release(stack, target, variants.SLOW, Strategy.CANARY))  # no load at all

    assert canary.state == R.PAUSED, canary.reason
    assert canary.reason.startswith("analysis inconclusive at 50%"), canary.reason
    assert "0 of 5 requests needed on the canary" in canary.reason
    assert canary.resume_to == R.PROGRESSING
    assert canary.traffic_percent == 50  # held where it was, for a person to decide
    paused = canary.events.filter(to_state=R.PAUSED).get()
    assert paused.cause == ReleaseEvent.Cause.ANALYSIS
    # Paused means paused: the engine leaves it alone.
    rollout.advance_all()
    canary.refresh_from_db()
    assert canary.state == R.PAUSED
