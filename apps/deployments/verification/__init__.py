"""The verification suite: the checks a release must pass before traffic moves to it.

`verification_request(release=)` queues a run; a worker's task calls `run(run_id=)`, which makes
each check of `suite()` in order (one module each under checks/), stores a CheckResult and
publishes it live as it finishes, judges the run and ticks the release's rollout.
"""

from apps.deployments.verification.base import CheckSpec, Context, Outcome
from apps.deployments.verification.runner import run, suite, verification_request

__all__ = ["CheckSpec", "Context", "Outcome", "run", "suite", "verification_request"]
