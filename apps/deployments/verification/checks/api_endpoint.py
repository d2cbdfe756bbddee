"""api_endpoint: a real authenticated request through the deployment's public endpoint, at MOC's
own URL, pinned to the release; the answer's shape checked."""

from __future__ import annotations

import time
from typing import Any

import httpx

from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification import probes, web
from apps.deployments.verification.base import Context, Outcome, one_line

NAME = CheckName.API_ENDPOINT
DESCRIPTION = "An authenticated request through the deployment's public endpoint answers, schema checked"
TIMEOUT_S = 45.0
_REQUEST_TIMEOUT_S = 40.0


def run(ctx: Context) -> Outcome:
    probe = probes.probe_for(ctx.version)
    if isinstance(probe, str):
        return Outcome(CheckStatus.SKIP, probe)
    path = web.infer_path(ctx.deployment.name)
    body = {"task": probe.task, "input": probe.data, "release": ctx.release.pk}
    evidence: dict[str, Any] = {"url": web.url(path), "task": probe.task}
    began = time.perf_counter()
    try:
        response = web.authenticated_post(
            path, body, timeout_s=_REQUEST_TIMEOUT_S, purpose=f"verification of release {ctx.release.pk}"
        )
    except web.Refused as exc:
        return Outcome(CheckStatus.FAIL, one_line(f"no request sent: {exc}"), evidence)
    except httpx.HTTPError as exc:
        return Outcome(CheckStatus.FAIL, one_line(web.unreachable(exc)), evidence)
    evidence.update(status=response.status_code, took_ms=round((time.perf_counter() - began) * 1000, 1))
    if response.status_code != 200:
        return Outcome(
            CheckStatus.FAIL,
            one_line(f"POST {path} answered {response.status_code}: {response.text[:200]}"),
            evidence,
        )
    try:
        answer = response.json()
    except ValueError:
        return Outcome(CheckStatus.FAIL, f"POST {path} answered 200 with a body that is not JSON", evidence)
    problem = schema_problem(answer, release_id=ctx.release.pk)
    evidence["answer_keys"] = sorted(answer) if isinstance(answer, dict) else []
    if problem:
        return Outcome(CheckStatus.FAIL, f"POST {path} answered 200, but {problem}", evidence)
    evidence.update(release=answer["release"], version=answer["version"])
    took = f"{evidence['took_ms']:.0f} ms"
    return Outcome(CheckStatus.PASS, f"POST {path} answered 200 in {took}, from this release", evidence)


def schema_problem(answer: Any, *, release_id: int) -> str | None:
    """What is wrong with the endpoint's answer, or None: it must say which release and version
    served it (this release) and hold a result."""
    if not isinstance(answer, dict):
        return "the body is not a JSON object"
    missing = [key for key in ("release", "version", "result") if key not in answer]
    if missing:
        return f"the body lacks {', '.join(missing)}"
    if not isinstance(answer["result"], dict) or not answer["result"]:
        return "its result is empty"
    served = answer["release"]
    served_id = served.get("id") if isinstance(served, dict) else served
    if served_id != release_id:
        return f"release {served!r} served it, not release {release_id}"
    return None
