"""Probe requests: the smallest request that shows a version answers, by the task it serves, sent
to one placement through serving's inference path (breaker, bulkhead and all)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from apps.models.models import ModelVersion
from apps.serving import inference
from apps.serving.domain.probe import PROBE_NEW_TOKENS, PROBE_PROMPT
from apps.serving.domain.tasks import EMBED, GENERATE, tasks_for


@dataclass(frozen=True, slots=True)
class Probe:
    task: str
    data: dict[str, Any]


def generate(prompt: str, max_new_tokens: int) -> Probe:
    """A greedy generation (temperature 0: the same answer every time)."""
    data = {
        "prompt": prompt,
        "max_new_tokens": max_new_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": [],
        "seed": None,
    }
    return Probe(GENERATE, data)


def probe_for(version: ModelVersion) -> Probe | str:
    """The probe `version` answers, or why none can be built for it."""
    served = tasks_for(version.kind, version.format)
    if GENERATE in served:
        return generate(PROBE_PROMPT, PROBE_NEW_TOKENS)
    if EMBED in served:
        return Probe(EMBED, {"texts": ["probe"]})
    if served:
        return (
            f"{version} answers only {', '.join(sorted(served))} requests, whose inputs depend on the "
            "model; no generic probe can be built"
        )
    return f"{version} ({version.kind or 'unknown kind'}, {version.format}) answers no request MOC can send"


def ask(version: ModelVersion, placement_id: int, probe: Probe) -> tuple[dict[str, Any], float]:
    """The placement's answer to `probe` and how long it took (ms); raises inference.Refused."""
    began = time.perf_counter()
    answer = inference.infer(version=version, task=probe.task, data=probe.data, placement_id=placement_id)
    return answer, (time.perf_counter() - began) * 1000
