"""A verification run: queued and dispatched on commit, each check bounded by its timeout, a
check that raises is a fail, required checks decide the verdict, a second delivery does nothing
twice, results go live on the deployment's group, and the release's tick follows."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from apps.deployments import events
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.states import VerificationState
from apps.deployments.models import CheckResult, VerificationRun
from apps.deployments.verification import Outcome, run, runner, suite, verification_request
from tests.deployments.factories import DeploymentFactory, ReleaseFactory, VerificationRunFactory

pytestmark = pytest.mark.django_db(transaction=True)


def check(name: CheckName, body: Callable[[Any], Outcome], timeout_s: float = 5.0) -> SimpleNamespace:
    return SimpleNamespace(NAME=name, DESCRIPTION=f"the {name} check", TIMEOUT_S=timeout_s, run=body)


def passes(_ctx: Any) -> Outcome:
    return Outcome(CheckStatus.PASS, "fine", {"n": 1})


def fails(_ctx: Any) -> Outcome:
    return Outcome(CheckStatus.FAIL, "broken")


def hangs(_ctx: Any) -> Outcome:
    time.sleep(3)
    return Outcome(CheckStatus.PASS, "too late")


def raises(_ctx: Any) -> Outcome:
    raise ConnectionError("the thing\nwent away")


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def use(*modules: SimpleNamespace) -> None:
        monkeypatch.setattr(runner, "CHECKS", list(modules))

    return use


def test_suite_lists_the_ten_checks_in_order_with_their_timeouts() -> None:
    specs = suite()
    assert [s.name for s in specs] == [c.value for c in CheckName]
    assert all(s.description and s.timeout_s > 0 for s in specs)


def test_a_request_queues_a_run_and_sends_its_task_on_commit(
    dispatched: list[tuple[str, list[Any], dict[str, Any]]],
) -> None:
    release = ReleaseFactory()

    verification = verification_request(release=release)

    assert verification.state == VerificationState.QUEUED
    assert dispatched == [("apps.deployments.tasks.verification_run", [verification.pk], dispatched[0][2])]


def test_a_run_records_each_check_and_passes_when_no_required_check_failed(
    checks: Callable[..., None], dispatched: list[tuple[str, list[Any], dict[str, Any]]]
) -> None:
    checks(check(CheckName.HEALTH, passes), check(CheckName.QUALITY, fails))
    release = ReleaseFactory(deployment=DeploymentFactory(required_checks=["health"]))
    verification = VerificationRunFactory(release=release)

    finished = run(run_id=verification.pk)

    assert finished.state == VerificationState.PASSED
    assert finished.started_at is not None
    assert finished.finished_at is not None
    rows = {r.name: r for r in CheckResult.objects.filter(run=verification)}
    health, quality = rows["health"], rows["quality"]
    assert (health.status, health.required, health.evidence) == ("pass", True, {"n": 1})
    assert (quality.status, quality.required, quality.reason) == ("fail", False, "broken")
    assert ("apps.deployments.tasks.release_tick", [release.pk]) in [(n, a) for n, a, _ in dispatched]


def test_a_check_that_overruns_its_timeout_fails_and_the_run_goes_on(
    checks: Callable[..., None], dispatched: list[Any]
) -> None:
    checks(check(CheckName.HEALTH, hangs, timeout_s=0.3), check(CheckName.DATABASE, passes))
    verification = VerificationRunFactory()

    began = time.monotonic()
    finished = run(run_id=verification.pk)

    assert time.monotonic() - began < 2.5
    assert finished.state == VerificationState.FAILED
    health = CheckResult.objects.get(run=verification, name="health")
    assert (health.status, health.reason) == ("fail", "timed out after 0.3 s")
    assert 300 <= health.duration_ms < 1000
    assert CheckResult.objects.get(run=verification, name="database").status == "pass"


def test_a_check_that_raises_is_a_fail_with_the_exceptions_one_line_reason(
    checks: Callable[..., None], dispatched: list[Any]
) -> None:
    checks(check(CheckName.SECURITY, raises))
    verification = VerificationRunFactory()

    finished = run(run_id=verification.pk)

    assert finished.state == VerificationState.FAILED
    result = CheckResult.objects.get(run=verification)
    assert (result.status, result.reason) == ("fail", "ConnectionError: the thing went away")
    assert result.evidence == {"exception": "ConnectionError"}


def test_a_second_delivery_does_nothing_twice(checks: Callable[..., None], dispatched: list[Any]) -> None:
    calls: list[int] = []

    def counted(ctx: Any) -> Outcome:
        calls.append(1)
        return passes(ctx)

    checks(check(CheckName.HEALTH, counted))
    verification = VerificationRunFactory()
    run(run_id=verification.pk)

    again = run(run_id=verification.pk)

    assert again.state == VerificationState.PASSED
    assert len(calls) == 1
    assert CheckResult.objects.filter(run=verification).count() == 1
    assert [n for n, _, _ in dispatched].count("apps.deployments.tasks.release_tick") == 1


def test_a_takeover_of_a_stale_run_stops_the_first_workers_writes(
    checks: Callable[..., None], dispatched: list[Any]
) -> None:
    # given: a first worker, still making its first check, whose run is taken over as stale by a
    # second delivery that makes the whole run while the first one waits
    verification = VerificationRunFactory()
    calls: list[str] = []

    def taken_over_meanwhile(ctx: Any) -> Outcome:
        calls.append("health")
        if len(calls) == 1:
            stale = timezone.now() - runner.STALE_AFTER - dt.timedelta(seconds=1)
            VerificationRun.objects.filter(pk=verification.pk).update(started_at=stale)
            assert run(run_id=verification.pk).state == VerificationState.PASSED
            return Outcome(CheckStatus.FAIL, "the first worker's late answer")
        return passes(ctx)

    def counted(ctx: Any) -> Outcome:
        calls.append("database")
        return passes(ctx)

    checks(check(CheckName.HEALTH, taken_over_meanwhile), check(CheckName.DATABASE, counted))

    # when: the first worker's check answers after the takeover
    first = run(run_id=verification.pk)

    # then: its answer is dropped and it goes no further; the takeover's results and verdict stand
    assert first.state == VerificationState.PASSED
    rows = {r.name: (r.status, r.reason) for r in CheckResult.objects.filter(run=verification)}
    assert rows == {"health": ("pass", "fine"), "database": ("pass", "fine")}
    assert calls == ["health", "health", "database"]
    assert [n for n, _, _ in dispatched].count("apps.deployments.tasks.release_tick") == 1


def test_a_run_ended_by_someone_else_keeps_their_verdict(
    checks: Callable[..., None], dispatched: list[Any]
) -> None:
    verification = VerificationRunFactory()

    def ended_meanwhile(ctx: Any) -> Outcome:
        VerificationRun.objects.filter(pk=verification.pk).update(
            state=VerificationState.ERRORED, error="lost"
        )
        return passes(ctx)

    checks(check(CheckName.HEALTH, ended_meanwhile))

    finished = run(run_id=verification.pk)

    assert (finished.state, finished.error) == (VerificationState.ERRORED, "lost")
    assert not CheckResult.objects.filter(run=verification).exists()
    assert "apps.deployments.tasks.release_tick" not in [n for n, _, _ in dispatched]


def test_a_run_that_cannot_read_its_release_errors_and_still_ticks_it(
    checks: Callable[..., None], dispatched: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    checks(check(CheckName.HEALTH, passes))
    verification = VerificationRunFactory()

    def unreadable(release: Any) -> Any:
        raise LookupError("no such release")

    monkeypatch.setattr(runner, "context_for", unreadable)

    finished = run(run_id=verification.pk)

    assert finished.state == VerificationState.ERRORED
    assert finished.error == "LookupError: no such release"
    assert not CheckResult.objects.filter(run=verification).exists()
    assert [n for n, _, _ in dispatched] == ["apps.deployments.tasks.release_tick"]


def test_each_finished_check_is_published_on_the_deployments_group(
    checks: Callable[..., None], dispatched: list[Any], redis_server: Any
) -> None:
    checks(check(CheckName.HEALTH, passes), check(CheckName.DATABASE, fails))
    verification = VerificationRunFactory()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.deployment_group(verification.release.deployment.name), channel)

    run(run_id=verification.pk)

    async def four() -> list[dict[str, Any]]:  # one event loop for every receive of the channel
        return [await layer.receive(channel) for _ in range(4)]

    heard = async_to_sync(four)()
    assert {m["type"] for m in heard} == {"verification.check"}
    payloads = [m["payload"] for m in heard]
    assert [p.get("state") for p in payloads] == ["running", None, None, "failed"]
    checked = [(p.get("check"), p.get("status")) for p in payloads[1:3]]
    assert checked == [("health", "pass"), ("database", "fail")]
    assert all(p["run"] == verification.pk for p in payloads)
