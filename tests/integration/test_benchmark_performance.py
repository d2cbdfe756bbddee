"""A benchmark job's baseline read by the performance check, end to end: the demo LM benchmarked by
the real benchmark runner (in this process, on the CPU), then a release of that same version served
by a real device worker (simulated GPU, thread pool) and probed through serving's inference path.
A release exactly as fast as its benchmark passes: the probe the benchmark timed in the runtime, plus
the allowance for the serving path, covers what the data plane adds."""

from __future__ import annotations

import pytest

from apps.deployments.domain.checks import CheckStatus
from apps.deployments.verification.base import context_for
from apps.deployments.verification.checks import performance
from apps.jobs import execution
from apps.jobs.domain.kinds import JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.models.models import ModelVersion
from apps.serving.models import Placement
from tests.integration import test_verification as verify
from tests.jobs.factories import JobFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The demo LM registered by a scan, and loaded by a real device worker (tests.integration.test_verification).
lm = verify.lm
loaded = verify.loaded


def benchmarked(version: ModelVersion) -> dict:
    """The version's baseline, as a benchmark job the dispatcher sent (task t1) records it."""
    job = JobFactory(kind=JobKind.BENCHMARK, params={"version": version.pk, "batch_sizes": [1], "repeats": 5})
    Job.objects.filter(pk=job.pk).update(task_id="t1")
    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.error
    version.refresh_from_db()
    return dict(version.benchmark)


def test_a_benchmarked_versions_own_release_passes_against_its_baseline(loaded: Placement) -> None:
    baseline = benchmarked(loaded.version)
    release, _ = verify.verifying(loaded)

    outcome = performance.run(context_for(release))

    print(f"\nbenchmark probe {baseline['probe']}, check: {outcome.reason}")
    assert outcome.status == CheckStatus.PASS, outcome.reason
    evidence = outcome.evidence["benchmark"]
    assert evidence["basis"] == "probe"
    assert evidence["measured_ms"] == pytest.approx(baseline["probe"]["ms_p50"], abs=0.01)
    assert "its probe timed in the runtime" in outcome.reason
    assert not outcome.reason.endswith("()")
