"""The verification suite end to end: a real device worker (simulated GPU, thread pool) serves the
demo LM, MOC's own HTTP server (pytest-django's live_server) is MOC_PUBLIC_URL, and `run` makes
every check in this process against them: probes, the public endpoint with a short-lived key and
without one, /metrics, file checksums, the broker and the channel layer, the golden set.

Prints each check's duration (run with -s to see them)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test.utils import override_settings

from apps.core.models import ApiKey
from apps.core.redis_clients import redis_client
from apps.deployments import figures
from apps.deployments.domain.checks import CheckStatus
from apps.deployments.domain.figures import Outcome
from apps.deployments.domain.states import ReleaseState, VerificationState
from apps.deployments.models import CheckResult, Release, VerificationRun
from apps.deployments.verification import probes, run, web
from apps.deployments.verification.base import context_for
from apps.deployments.verification.checks import performance
from apps.fleet.models import Device
from apps.models import demo, scanning
from apps.models.models import ModelFile, ModelVersion
from apps.models.scanning.checksums import files_checksum
from apps.serving import placing
from apps.serving.domain.states import PlacementState
from apps.serving.models import Placement
from tests.deployments.factories import DeploymentFactory
from tests.procs import Process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NODE = "itest-verify"
QUEUE = f"gpu.{NODE}.0"


@pytest.fixture
def lm(demo_models: Path) -> Iterator[ModelVersion]:
    """The demo LM, registered by a real scan and its files hashed by the registry's own service."""
    with override_settings(MOC_MODEL_ROOTS=[str(demo_models)]):
        scanning.scan_run(scan=scanning.scan_request())
        version = ModelVersion.objects.get(model__name=demo.BASE)
        files_checksum(file_ids=list(ModelFile.objects.filter(version=version).values_list("pk", flat=True)))
        ModelVersion.objects.filter(pk=version.pk).update(validation_state="valid")
        version.refresh_from_db()
        yield version


@pytest.fixture
def loaded(start_worker: Callable[..., Process], demo_models: Path, lm: ModelVersion) -> Placement:
    start_worker(
        queues=QUEUE,
        pool="threads",
        concurrency=4,
        name="verify0",
        MOC_DEVICES="sim:1x24GiB",
        MOC_NODE_NAME=NODE,
        MOC_MODEL_ROOTS=str(demo_models),
    )
    registered = Device.objects.filter(node__name=NODE).exists
    wait_until(registered, 30, "the worker to register its device")
    placement = placing.placement_load(version=lm)

    def settled() -> bool:
        placement.refresh_from_db()
        return placement.state in (PlacementState.LOADED, PlacementState.FAILED)

    wait_until(settled, 90, "the demo LM to load")
    assert placement.state == PlacementState.LOADED, placement.error
    return placement


@pytest.fixture
def public_url(live_server: Any, settings: Any) -> str:
    settings.MOC_PUBLIC_URL = live_server.url
    return live_server.url


def verifying(placement: Placement, **deployment: Any) -> tuple[Release, Release]:
    """A release of the demo LM being verified on `placement`, after a promoted one on the same
    placement (blue-green: still resident)."""
    target = DeploymentFactory(registered_model=placement.version.model, replicas=1, **deployment)
    stable = Release.objects.create(
        deployment=target, model_version=placement.version, state=ReleaseState.PROMOTED, traffic_percent=100
    )
    stable.placements.add(placement)
    target.current_release = stable
    target.save()
    release = Release.objects.create(
        deployment=target,
        model_version=placement.version,
        state=ReleaseState.VERIFYING,
        previous_release=stable,
    )
    release.placements.add(placement)
    return release, stable


def greedy(placement: Placement, prompt: str, tokens: int) -> str:
    answer, _ = probes.ask(placement.version, placement.pk, probes.generate(prompt, tokens))
    return str(answer["result"]["text"])


def results(verification: VerificationRun) -> dict[str, CheckResult]:
    return {r.name: r for r in CheckResult.objects.filter(run=verification)}


def report(title: str, checks: dict[str, CheckResult]) -> None:
    print(f"\n{title}")
    for r in checks.values():
        print(f"  {r.name:<13} {r.status:<5} {r.duration_ms:>6} ms  {r.reason}")
    print(f"  {'total':<13} {'':<5} {sum(r.duration_ms for r in checks.values()):>6} ms")


def test_a_healthy_release_of_the_demo_lm_passes_the_suite(loaded: Placement, public_url: str) -> None:
    # given: a golden set the model answers (greedy, so the same text every time)
    said = greedy(loaded, "The fleet", 6)
    release, _ = verifying(
        loaded,
        golden_set=[
            {"prompt": "The fleet", "expected": said, "match": "exact", "max_new_tokens": 6},
            {"prompt": "The fleet", "expected": said[:3], "match": "contains", "max_new_tokens": 6},
            {"prompt": "The fleet", "expected": said.upper(), "match": "similarity", "tolerance": 0.95,
             "max_new_tokens": 6},
        ],
    )  # fmt: skip
    verification = VerificationRun.objects.create(release=release)

    # when
    finished = run(run_id=verification.pk)

    # then
    checks = results(verification)
    report("suite on the demo LM (all pass):", checks)
    statuses = {name: r.status for name, r in checks.items()}
    expected = {
        "health": "pass",
        "availability": "pass",
        "api_endpoint": "pass",
        "database": "pass",
        "performance": "pass",
        "security": "pass",
        "integrations": "pass",
        "monitoring": "pass",
        "rollback": "pass",
        "quality": "pass",
    }
    assert statuses == expected, {n: r.reason for n, r in checks.items() if r.status != expected[n]}
    assert finished.state == VerificationState.PASSED
    # health: the release's one placement answered its probe
    assert checks["health"].evidence["answered_ms"].keys() == {str(loaded.pk)}
    assert checks["health"].reason.startswith("1 placement(s) answered a generate probe")
    # api_endpoint: an authenticated request through the public endpoint, answered by this release
    assert (
        checks["api_endpoint"].evidence["url"]
        == f"{public_url}/api/v1/deployments/{release.deployment.name}/infer/"
    )
    assert (checks["api_endpoint"].evidence["status"], checks["api_endpoint"].evidence["release"]["id"]) == (
        200,
        release.pk,
    )
    # security: the same endpoint refused the call without credentials
    assert checks["security"].evidence["unauthenticated_status"] in (401, 403)
    assert "without credentials the endpoint answers 40" in checks["security"].reason
    # performance: the same probe timed on stable (loaded, the same version), alternately
    timed = checks["performance"].evidence
    assert timed["compared_with"] == "stable's median of 20 alternated probes"
    assert (timed["release"]["probes"], timed["stable"]["probes"]) == (20, 20)
    assert "stable_live" not in timed
    # quality: every golden item matched
    assert [item["ok"] for item in checks["quality"].evidence["items"]] == [True, True, True]
    # monitoring: /metrics exports the series the api_endpoint request left
    assert checks["monitoring"].reason.startswith("/metrics exports")
    served = {(labels["release"], labels["outcome"]) for labels in checks["monitoring"].evidence["labels"]}
    assert (str(release.pk), "ok") in served
    assert "still loaded" in checks["rollback"].reason
    # the endpoint's key was made for the request and deleted after it
    assert not ApiKey.objects.filter(owner__username=web.SYSTEM_USERNAME).exists()


def test_a_release_that_misses_its_slo_and_golden_set_fails(loaded: Placement, public_url: str) -> None:
    # given: an objective no request meets, a golden answer the model does not give, and the
    # performance check made optional
    release, _ = verifying(
        loaded,
        slo_p99_ms=0.001,
        golden_set=[{"prompt": "The fleet", "expected": "zzz qqq", "match": "similarity", "tolerance": 0.9}],
        required_checks=["health", "quality"],
    )
    verification = VerificationRun.objects.create(release=release)

    began = time.monotonic()
    finished = run(run_id=verification.pk)

    checks = results(verification)
    report(f"suite with a missed SLO and golden set ({time.monotonic() - began:.1f} s):", checks)
    assert finished.state == VerificationState.FAILED
    assert (checks["performance"].status, checks["performance"].required) == ("fail", False)
    assert "against the objective 0.001 ms" in checks["performance"].reason
    assert (checks["quality"].status, checks["quality"].required) == ("fail", True)
    assert "1 of 1 golden item(s) failed" in checks["quality"].reason
    assert checks["quality"].evidence["items"][0]["score"] < 0.9
    assert checks["health"].status == "pass"


def test_the_endpoint_check_fails_for_a_release_the_endpoint_will_not_serve(
    loaded: Placement, public_url: str
) -> None:
    release, _ = verifying(loaded)
    Release.objects.filter(pk=release.pk).update(state=ReleaseState.CANCELLED)
    verification = VerificationRun.objects.create(release=release)

    run(run_id=verification.pk)

    endpoint = CheckResult.objects.get(run=verification, name="api_endpoint")
    assert endpoint.status == "fail"
    assert "answered 400" in endpoint.reason


def test_performance_holds_a_release_to_stables_live_figures_when_stable_has_nothing_loaded(
    loaded: Placement,
) -> None:
    # given: stable unloaded (a recreate), its live figures from real traffic a bucket ago, slower
    # than the probes will be
    release, stable = verifying(loaded)
    stable.placements.clear()
    for _ in range(30):
        figures.record(
            redis_client(), release_id=stable.pk, outcome=Outcome.OK, latency_ms=4_000, at=time.time() - 10
        )

    outcome = performance.run(context_for(release))

    assert outcome.status == CheckStatus.PASS, outcome.reason
    assert "against stable's live p50 over 30 requests" in outcome.reason
    assert f"release #{stable.pk} has nothing loaded to probe" in outcome.reason
    assert outcome.evidence["stable_live"]["requests"] == 30
    assert "stable" not in outcome.evidence
