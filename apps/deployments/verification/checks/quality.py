"""quality: the deployment's golden set, each prompt generated greedily by the release, matched
against what was expected (apps.deployments.domain.quality)."""

from __future__ import annotations

from typing import Any

from apps.deployments.domain import quality
from apps.deployments.domain.checks import CheckName, CheckStatus
from apps.deployments.verification import probes
from apps.deployments.verification.base import Context, Outcome, one_line
from apps.serving.domain.tasks import GENERATE, tasks_for
from apps.serving.inference import Refused

NAME = CheckName.QUALITY
DESCRIPTION = "The deployment's golden set: each prompt's output matches what is expected"
TIMEOUT_S = 120.0


def run(ctx: Context) -> Outcome:
    if not ctx.deployment.golden_set:
        return Outcome(CheckStatus.SKIP, f"{ctx.deployment.name} has no golden set")
    try:
        items = quality.parse_golden_set(ctx.deployment.golden_set)
    except ValueError as exc:
        return Outcome(CheckStatus.FAIL, one_line(f"the golden set is malformed: {exc}"))
    if GENERATE not in tasks_for(ctx.version.kind, ctx.version.format):
        return Outcome(CheckStatus.SKIP, f"{ctx.version} does not generate text, which a golden set needs")
    if not ctx.placements:
        return Outcome(CheckStatus.FAIL, f"release #{ctx.release.pk} has no placements to ask")
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        placement = ctx.placements[index % len(ctx.placements)]
        try:
            probe = probes.generate(item.prompt, item.max_new_tokens)
            answer, _ = probes.ask(ctx.version, placement.pk, probe)
        except Refused as refused:
            where = f"item {index + 1} was refused by placement {placement.pk}"
            return Outcome(
                CheckStatus.FAIL,
                one_line(f"{where} ({refused.status}): {refused}"),
                {"items": results},
            )
        output = str(answer["result"].get("text", ""))
        verdict = quality.judge(output, item)
        results.append(
            {"prompt": item.prompt, "expected": item.expected, "match": item.match.value, "output": output,
             "score": round(verdict.score, 4), "ok": verdict.ok}
        )  # fmt: skip
    failed = [i for i, r in enumerate(results, 1) if not r["ok"]]
    evidence = {"items": results}
    if failed:
        first = results[failed[0] - 1]
        return Outcome(
            CheckStatus.FAIL,
            one_line(
                f"{len(failed)} of {len(results)} golden item(s) failed; item {failed[0]} "
                f"({first['match']}) answered {first['output']!r}, expected {first['expected']!r}"
            ),
            evidence,
        )
    return Outcome(CheckStatus.PASS, f"all {len(results)} golden item(s) matched", evidence)
