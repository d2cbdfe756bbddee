"""monitoring: MOC's /metrics, fetched as Prometheus would, exports the deployment's request series."""

from __future__ import annotations

import httpx
from django.conf import settings

from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.domain.monitoring import REQUESTS_SERIES, deployment_series
from apps.deployments.verification import web
from apps.deployments.verification.base import Context, Outcome, one_line

NAME = CheckName.MONITORING
DESCRIPTION = "The deployment's request series is exported on /metrics"
TIMEOUT_S = 20.0
_REQUEST_TIMEOUT_S = 15.0


def run(ctx: Context) -> Outcome:
    token = settings.MOC_METRICS_TOKEN
    headers = {**web.headers(), **({"Authorization": f"Bearer {token}"} if token else {})}
    evidence = {"url": web.url("/metrics"), "series": REQUESTS_SERIES}
    if token and (problem := web.key_problem()):
        return Outcome(CheckStatus.FAIL, one_line(f"MOC_METRICS_TOKEN not sent: {problem}"), evidence)
    try:
        response = httpx.get(web.url("/metrics"), headers=headers, timeout=_REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Outcome(CheckStatus.FAIL, one_line(web.unreachable(exc)), evidence)
    if response.status_code != 200:
        return Outcome(CheckStatus.FAIL, f"GET /metrics answered {response.status_code}", evidence)
    try:
        found = deployment_series(response.text, sample=REQUESTS_SERIES, deployment=ctx.deployment.name)
    except ValueError as exc:
        why = f"/metrics is not a Prometheus exposition: {exc}"
        return Outcome(CheckStatus.FAIL, one_line(why), evidence)
    if not found:
        return Outcome(
            CheckStatus.FAIL,
            f'/metrics has no {REQUESTS_SERIES} series with deployment="{ctx.deployment.name}"',
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"/metrics exports {len(found)} {REQUESTS_SERIES} series of {ctx.deployment.name}",
        {**evidence, "labels": found[:20]},
    )
