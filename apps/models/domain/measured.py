"""What jobs measured of versions, shaped for the model and version pages (pure Python): the
evaluations compared across a model's versions, one chart per figure with a line per dataset, and
a version's benchmark baseline as one row.

The JSON is written by the evaluate and benchmark jobs (ModelVersion.evaluations, .benchmark;
the keys are documented on the API's version serializer). It is read defensively: a figure that is
missing or not a finite number is left out, never shown as 0.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The evaluation figures compared across versions: key in the JSON, and the chart's title.
EVALUATION_FIGURES = (
    ("loss", "Eval loss"),
    ("perplexity", "Perplexity"),
    ("exact_match", "Exact match"),
)


def number(value: Any) -> float | None:
    """`value` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def moment(value: Any) -> dt.datetime | None:
    """An ISO 8601 time the jobs wrote ("at"), or None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _job(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class EvaluationRow:
    """One of a version's evaluations, as the pages' tables show it."""

    key: str
    loss: float | None
    perplexity: float | None
    exact_match: float | None
    rows: int | None
    job: int | None
    at: dt.datetime | None


def evaluation_rows(evaluations: Mapping[str, Any]) -> list[EvaluationRow]:
    """A version's evaluations, one row per dataset key, in key order."""
    rows = []
    for key, figures in sorted(evaluations.items()):
        if not isinstance(figures, Mapping):
            continue
        counted = number(figures.get("rows"))
        rows.append(
            EvaluationRow(
                key=key,
                loss=number(figures.get("loss")),
                perplexity=number(figures.get("perplexity")),
                exact_match=number(figures.get("exact_match")),
                rows=int(counted) if counted is not None else None,
                job=_job(figures.get("job")),
                at=moment(figures.get("at")),
            )
        )
    return rows


def evaluation_charts(versions: Sequence[tuple[int, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One chart per figure any version has, from (version number, evaluations) oldest first:
    {"figure", "title", "series": [{"key", "x": ["v1", ...], "y": [...]}]}, a series per dataset
    key, with the versions that have that figure for it."""
    charts = []
    for figure, title in EVALUATION_FIGURES:
        series: dict[str, dict[str, list[Any]]] = {}
        for version_number, evaluations in versions:
            for key, figures in sorted(evaluations.items()):
                value = number(figures.get(figure)) if isinstance(figures, Mapping) else None
                if value is None:
                    continue
                points = series.setdefault(key, {"x": [], "y": []})
                points["x"].append(f"v{version_number}")
                points["y"].append(value)
        if series:
            charts.append(
                {
                    "figure": figure,
                    "title": title,
                    "series": [{"key": key, **points} for key, points in sorted(series.items())],
                }
            )
    return charts


@dataclass(frozen=True, slots=True)
class BaselineRow:
    """A version's benchmark baseline as its table row shows it."""

    ttft_ms_p50: float | None
    token_ms_p50: float | None
    token_ms_p99: float | None
    tokens_per_s: float | None
    tokens_per_s_batch: int | None  # the batch size of the best throughput
    memory_bytes: int | None
    memory_meter: str
    load_s: float | None
    latency_ms_p50: float | None
    latency_ms_p99: float | None
    device: str
    simulated: bool | None
    at: dt.datetime | None
    job: int | None


def baseline_row(benchmark: Mapping[str, Any]) -> BaselineRow | None:
    """The row of a stored baseline; None when there is none. The per-token p99 is the run the
    whole-request figures come from (batch 1, the shortest prompt); the throughput the best run's."""
    if not benchmark:
        return None
    runs = [run for run in benchmark.get("runs") or [] if isinstance(run, Mapping)]
    single = [run for run in runs if run.get("batch") == 1]
    first = min(single, key=lambda run: number(run.get("prompt_tokens")) or 0.0) if single else None
    best = max(runs, key=lambda run: number(run.get("tokens_per_s")) or 0.0) if runs else None
    device = benchmark.get("device")
    label = device.get("label") if isinstance(device, Mapping) else device
    simulated = device.get("simulated") if isinstance(device, Mapping) else None
    memory = number(benchmark.get("memory_bytes"))
    batch = best.get("batch") if best is not None else None
    return BaselineRow(
        ttft_ms_p50=number(benchmark.get("ttft_ms_p50")),
        token_ms_p50=number(benchmark.get("token_ms_p50")),
        token_ms_p99=number(first.get("token_ms_p99")) if first is not None else None,
        tokens_per_s=number(best.get("tokens_per_s")) if best is not None else None,
        tokens_per_s_batch=batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
        memory_bytes=int(memory) if memory is not None else None,
        memory_meter=str(benchmark.get("memory_meter") or ""),
        load_s=number(benchmark.get("load_s")),
        latency_ms_p50=number(benchmark.get("latency_ms_p50")),
        latency_ms_p99=number(benchmark.get("latency_ms_p99")),
        device=str(label) if label else "",
        simulated=simulated if isinstance(simulated, bool) else None,
        at=moment(benchmark.get("at")),
        job=_job(benchmark.get("job")),
    )
