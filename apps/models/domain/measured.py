"""What jobs measured of versions, shaped for the model and version pages (pure Python): the
evaluations compared across a model's versions, one chart per figure with a line per evaluation
key, and a version's benchmark baseline as one row.

The JSON is written by the evaluate and benchmark jobs (ModelVersion.evaluations, .benchmark;
the keys are documented on the API's version serializer). It is read defensively: a figure that is
missing or not a finite number is left out, never shown as 0.

An evaluation's key says what it measured, in namespaces a dataset's name cannot collide with (a
name holds no ":"): `dataset:<name>:<split>` for the loss over a dataset's split, and
`golden:<the first 8 hex of the sha256 of its pairs>` for the exact match on a golden set. Only
like is drawn against like: a line per key, split further when the dataset's file or split rule
(its sha256, eval_share, split_seed, recorded in the figures) differed between versions. Keys
written before these namespaces (a bare dataset name, or "golden") are shown as they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The evaluation figures compared across versions: key in the JSON, and the chart's title.
EVALUATION_FIGURES = (
    ("loss", "Loss"),
    ("perplexity", "Perplexity"),
    ("exact_match", "Exact match"),
)


DATASET_KEY = "dataset:"
GOLDEN_KEY = "golden:"
# How a split reads in a key's label.
SPLIT_WORDS = {"eval": "eval", "train": "train", "all": "all rows"}


def dataset_key(name: str, split: str) -> str:
    """The key of an evaluation's loss over dataset `name`'s `split`."""
    return f"{DATASET_KEY}{name}:{split}"


def golden_sha256(pairs: Sequence[tuple[str, str]]) -> str:
    """The sha256 of a golden set: of its (prompt, expected) pairs as compact JSON, in order."""
    text = json.dumps(
        [[prompt, expected] for prompt, expected in pairs], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def golden_key(sha256: str) -> str:
    """The key of an evaluation's exact match on the golden set whose sha256 is `sha256`."""
    return f"{GOLDEN_KEY}{sha256[:8]}"


def key_label(key: str) -> str:
    """A key as people read it: "demo-status (eval)", "golden set 1a2b3c4d"; an older key as is."""
    if key.startswith(DATASET_KEY) and ":" in key[len(DATASET_KEY) :]:
        name, split = key[len(DATASET_KEY) :].rsplit(":", 1)
        return f"{name} ({SPLIT_WORDS.get(split, split)})"
    if key.startswith(GOLDEN_KEY):
        return f"golden set {key[len(GOLDEN_KEY) :]}"
    return key


def _data(figures: Mapping[str, Any]) -> tuple[str, ...]:
    """What the figures were measured on beyond their key, in words: the dataset file's sha256 and
    its split rule; empty when the figures do not say (a golden set's key is its content's hash)."""
    words = []
    sha256 = figures.get("sha256")
    if isinstance(sha256, str) and sha256:
        words.append(f"data {sha256[:8]}")
    share = number(figures.get("eval_share"))
    if share is not None:
        words.append(f"eval share {share:g}")
    seed = figures.get("split_seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        words.append(f"seed {seed}")
    return tuple(words)


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
    label: str  # key_label(key)
    data: str  # what it was measured on beyond its key ("data 1a2b3c4d, eval share 0.1, seed 0"), or ""
    loss: float | None
    perplexity: float | None
    exact_match: float | None
    rows: int | None
    job: int | None
    at: dt.datetime | None


def evaluation_rows(evaluations: Mapping[str, Any]) -> list[EvaluationRow]:
    """A version's evaluations, one row per key, in key order."""
    rows = []
    for key, figures in sorted(evaluations.items()):
        if not isinstance(figures, Mapping):
            continue
        counted = number(figures.get("rows"))
        rows.append(
            EvaluationRow(
                key=key,
                label=key_label(key),
                data=", ".join(_data(figures)),
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
    {"figure", "title", "series": [{"key", "label", "x": ["v1", ...], "y": [...]}]}, a series per
    key and what it was measured on (see the module's docstring), with the versions that have that
    figure for it. A key measured on one set of data is labelled by the key alone; one measured on
    several has a series for each, its label saying which."""
    charts = []
    for figure, title in EVALUATION_FIGURES:
        series: dict[tuple[str, tuple[str, ...]], dict[str, list[Any]]] = {}
        for version_number, evaluations in versions:
            for key, figures in sorted(evaluations.items()):
                value = number(figures.get(figure)) if isinstance(figures, Mapping) else None
                if value is None:
                    continue
                points = series.setdefault((key, _data(figures)), {"x": [], "y": []})
                points["x"].append(f"v{version_number}")
                points["y"].append(value)
        if not series:
            continue
        data_per_key: dict[str, int] = {}
        for key, _ in series:
            data_per_key[key] = data_per_key.get(key, 0) + 1
        lines = []
        for (key, data), points in sorted(series.items()):
            label = key_label(key)
            if data_per_key[key] > 1:
                label = f"{label} · {', '.join(data) or 'data not recorded'}"
            lines.append({"key": key, "label": label, **points})
        charts.append({"figure": figure, "title": title, "series": lines})
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
