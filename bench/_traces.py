"""Synthetic request traces for the eviction benchmark: which model each request asks for, and when.

A trace draws requests from a catalogue of models with Zipf popularity (weight of the k-th most popular
model ∝ 1/k^s). Sizes are log-uniform between 0.5 and 40 GiB (many small models, a few large ones, as
on a real fleet), and placed on the popularity ranking in one of three ways: at random, small models
popular, or large models popular. Loading a model costs a fixed part (process start, CUDA context,
graph capture) plus a part proportional to its size (reading and copying the weights). Bursts make a
cold model suddenly hot for a while, as when a new deployment starts or a batch job begins.

Everything comes from one random.Random(seed), so a trace is the same on every run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

GiB = 1024**3
MIN_SIZE_GIB = 0.5
MAX_SIZE_GIB = 40.0
FIXED_LOAD_S = 4.0  # process start, CUDA context, warm-up
LOAD_GIB_PER_S = 2.0  # disk/page cache to device, roughly one NVMe drive
MEAN_GAP_S = 10.0  # between requests to one device: a miss's load (~8 s on average) fits between them

Sizing = Literal["uncorrelated", "small-popular", "large-popular"]


@dataclass(frozen=True, slots=True)
class Model:
    id: int
    size_bytes: int
    load_seconds: float


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    about: str  # one line for the printed table
    models: tuple[Model, ...]  # index = model id
    times: tuple[float, ...]  # seconds since the trace began, ascending
    requests: tuple[int, ...]  # model id of each request

    def next_use(self) -> list[int]:
        """For each request, the index of the next request for the same model (len(requests) if none)."""
        later: dict[int, int] = {}
        result = [0] * len(self.requests)
        for i in range(len(self.requests) - 1, -1, -1):
            model = self.requests[i]
            result[i] = later.get(model, len(self.requests))
            later[model] = i
        return result


def load_seconds(size_bytes: int) -> float:
    """What loading a model of this size costs: a fixed part plus one proportional to its bytes."""
    return FIXED_LOAD_S + size_bytes / GiB / LOAD_GIB_PER_S


def catalogue(
    count: int, rng: random.Random, *, min_gib: float = MIN_SIZE_GIB, max_gib: float = MAX_SIZE_GIB
) -> list[Model]:
    """`count` models with log-uniform sizes, rounded to 1/8 GiB."""
    low, high = math.log(min_gib), math.log(max_gib)
    models = []
    for model_id in range(count):
        size = round(math.exp(rng.uniform(low, high)) * 8) / 8 * GiB
        models.append(Model(id=model_id, size_bytes=int(size), load_seconds=load_seconds(int(size))))
    return models


def popularity_order(models: list[Model], sizing: Sizing, rng: random.Random) -> list[int]:
    """Model ids, most popular first.

    Correlated orders sort by log size with noise (one standard deviation ≈ a factor of 2.7), so the
    correlation is strong but not perfect, as on a real fleet where some large models are popular too.
    """
    ids = [m.id for m in models]
    if sizing == "uncorrelated":
        rng.shuffle(ids)
        return ids
    sign = 1.0 if sizing == "small-popular" else -1.0
    noisy = {m.id: sign * math.log(m.size_bytes) + rng.gauss(0.0, 1.0) for m in models}
    return sorted(ids, key=noisy.__getitem__)


def make_trace(
    name: str,
    *,
    seed: int,
    requests: int = 40_000,
    models: int = 100,
    zipf_s: float = 1.0,
    sizing: Sizing = "uncorrelated",
    mean_gap_s: float = MEAN_GAP_S,
    bursts: bool = False,
    burst_share: float = 0.3,
) -> Trace:
    """A trace of `requests` requests, Poisson arrivals `mean_gap_s` apart on average.

    With `bursts`, a burst starts every ~2,500 requests: a model from the colder half of the ranking takes
    `burst_share` of the requests for the next 300 to 1,500 requests, then goes cold again.
    """
    rng = random.Random(seed)
    catalogue_models = catalogue(models, rng)
    order = popularity_order(catalogue_models, sizing, rng)
    cumulative = list(accumulate(1.0 / (rank**zipf_s) for rank in range(1, models + 1)))
    chosen = rng.choices(order, cum_weights=cumulative, k=requests)
    about = f"zipf s={zipf_s}, {sizing}"
    if bursts:
        cold = order[models // 2 :]
        start = int(rng.expovariate(1 / 2500))
        while start < requests:
            model = rng.choice(cold)
            length = rng.randint(300, 1500)
            for i in range(start, min(requests, start + length)):
                if rng.random() < burst_share:
                    chosen[i] = model
            start += length + int(rng.expovariate(1 / 2500))
        about += f", bursts of {burst_share:.0%}"
    times = list(accumulate(rng.expovariate(1 / mean_gap_s) for _ in range(requests)))
    return Trace(name, about, tuple(catalogue_models), tuple(times), tuple(chosen))


def standard_traces(seed: int, requests: int, models: int) -> list[Trace]:
    """The traces the eviction benchmark runs: popularity skew, size correlation, bursts."""
    common = {"requests": requests, "models": models}
    return [
        make_trace("zipf-0.8", seed=seed, zipf_s=0.8, **common),
        make_trace("zipf-1.0", seed=seed + 1, zipf_s=1.0, **common),
        make_trace("zipf-1.2", seed=seed + 2, zipf_s=1.2, **common),
        make_trace("small-popular", seed=seed + 3, sizing="small-popular", **common),
        make_trace("large-popular", seed=seed + 4, sizing="large-popular", **common),
        make_trace("bursts", seed=seed + 5, bursts=True, **common),
    ]
