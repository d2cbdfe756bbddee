"""Eviction policies on synthetic traces: LRU, GDSF and Belady's offline bound, on one device.

Replays each trace of bench/_traces.py (Zipf popularity, sizes 0.5-40 GiB placed at random, small
models popular, large models popular, bursts of a cold model turning hot) against one device of fixed
capacity. A request for a resident model is a hit; a miss loads the model, first evicting by the policy
until it fits. LRU and GDSF go through MOC's real code (eviction.choose_victims, gdsf_priority,
clock_after); Belady evicts the resident whose next request is farthest away. With models of different
sizes Belady is the classic bound but not strictly optimal (the true optimum is NP-hard), and it counts
hits, not load seconds, so GDSF may beat it on load seconds.

Figures per trace and policy: hit ratio, GiB loaded, load hours (the sum of load times of every miss),
and refusals (a miss that could not be loaded because the churn floor protected too much). Then a run
of the burst trace with the churn floor (min_residency_s) at several values.

    .venv/bin/python bench/eviction_policies.py [--requests 40000] [--capacity-gib 80] [--seed 7]

Pure Python, no Django; the default run takes well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.serving.domain.eviction import (  # noqa: E402
    GiB,
    Policy,
    Resident,
    choose_victims,
    clock_after,
    evictable,
    gdsf_priority,
)
from bench._traces import FIXED_LOAD_S, LOAD_GIB_PER_S, MEAN_GAP_S, Trace, standard_traces  # noqa: E402

BELADY = "belady"
POLICIES = (Policy.LRU.value, Policy.GDSF.value, BELADY)
CHURN_FLOORS_S = (0.0, 60.0, 300.0)
QUICK_RELOAD_S = 300.0  # a load this soon after the same model was evicted is churn


@dataclass(frozen=True, slots=True)
class Outcome:
    requests: int
    hits: int
    loaded_bytes: int
    load_seconds: float
    refused: int
    evictions: int
    quick_reloads: int  # loads of a model evicted at most QUICK_RELOAD_S earlier

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests


def _belady_victims(
    residents: dict[int, Resident], next_use: dict[int, int], need: int, *, now: float, min_residency_s: float
) -> list[Resident] | None:
    """Classic Belady: evictable residents, farthest next request first, until `need` bytes are free."""
    allowed = [r for r in residents.values() if evictable(r, now=now, min_residency_s=min_residency_s)]
    allowed.sort(key=lambda r: (-next_use[r.version_id], r.placement_id))
    victims, freed = [], 0
    for r in allowed:
        if freed >= need:
            break
        victims.append(r)
        freed += r.size_bytes
    return victims if freed >= need else None


def simulate(trace: Trace, policy: str, *, capacity: int, min_residency_s: float) -> Outcome:
    """Replay `trace` on one device of `capacity` bytes under `policy`."""
    next_uses = trace.next_use() if policy == BELADY else []
    residents: dict[int, Resident] = {}  # by model id
    next_use: dict[int, int] = {}  # Belady: model id -> index of its next request
    evicted_at: dict[int, float] = {}
    used = clock = 0.0
    hits = loaded = refused = evictions = quick = 0
    load_s = 0.0
    for i, (now, model_id) in enumerate(zip(trace.times, trace.requests, strict=True)):
        if policy == BELADY:
            next_use[model_id] = next_uses[i]
        resident = residents.get(model_id)
        if resident is not None:
            hits += 1
            uses = resident.uses + 1
            priority = gdsf_priority(
                clock=clock, uses=uses, load_seconds=resident.load_seconds, size_bytes=resident.size_bytes
            )
            residents[model_id] = replace(resident, uses=uses, last_used=now, priority=priority)
            continue
        model = trace.models[model_id]
        need = int(used + model.size_bytes - capacity)
        if policy == BELADY:
            victims = _belady_victims(residents, next_use, need, now=now, min_residency_s=min_residency_s)
        else:
            victims = choose_victims(
                list(residents.values()),
                need,
                now=now,
                policy=Policy(policy),
                min_residency_s=min_residency_s,
            )
        if victims is None:
            refused += 1
            continue
        for victim in victims:
            del residents[victim.version_id]
            evicted_at[victim.version_id] = now
            used -= victim.size_bytes
        if now - evicted_at.get(model_id, -QUICK_RELOAD_S - 1) <= QUICK_RELOAD_S:
            quick += 1
        evictions += len(victims)
        clock = clock_after(clock, victims)
        residents[model_id] = Resident(
            placement_id=i,
            version_id=model_id,
            size_bytes=model.size_bytes,
            loaded_at=now,
            last_used=now,
            uses=1,
            load_seconds=model.load_seconds,
            priority=gdsf_priority(
                clock=clock, uses=1, load_seconds=model.load_seconds, size_bytes=model.size_bytes
            ),
        )
        used += model.size_bytes
        loaded += model.size_bytes
        load_s += model.load_seconds
    return Outcome(len(trace.requests), hits, loaded, load_s, refused, evictions, quick)


HEADER = (
    f"{'trace':14} {'policy':7} {'hit ratio':>9} {'GiB loaded':>10} {'load h':>7} {'evictions':>9} "
    f"{'quick reloads':>13} {'refused':>7}"
)


def row(trace: str, policy: str, outcome: Outcome) -> str:
    return (
        f"{trace:14} {policy:7} {outcome.hit_ratio:9.3f} {outcome.loaded_bytes / GiB:10,.0f} "
        f"{outcome.load_seconds / 3600:7.1f} {outcome.evictions:9,d} {outcome.quick_reloads:13,d} "
        f"{outcome.refused:7,d}"
    )


def compare_policies(traces: list[Trace], capacity: int) -> list[str]:
    """Print the table per trace and policy; return the lines comparing GDSF with LRU and Belady."""
    print(f"one device of {capacity / GiB:.0f} GiB, no churn floor (min_residency_s = 0)\n")
    print(HEADER)
    summary = []
    for trace in traces:
        outcomes = {p: simulate(trace, p, capacity=capacity, min_residency_s=0.0) for p in POLICIES}
        for policy, outcome in outcomes.items():
            print(row(trace.name, policy, outcome), flush=True)
        lru, gdsf, belady = outcomes[Policy.LRU], outcomes[Policy.GDSF], outcomes[BELADY]
        beats = gdsf.hit_ratio > lru.hit_ratio and gdsf.load_seconds < lru.load_seconds
        summary.append(
            f"{trace.name:14} {trace.about:38} "
            f"{(gdsf.hit_ratio - lru.hit_ratio) * 100:+8.1f} {gdsf.load_seconds / lru.load_seconds:9.2f} "
            f"{gdsf.loaded_bytes / lru.loaded_bytes:9.2f} {(gdsf.hit_ratio - belady.hit_ratio) * 100:+9.1f} "
            f"{gdsf.load_seconds / belady.load_seconds:11.2f}  {'yes' if beats else 'NO'}"
        )
    return summary


def churn_floor(trace: Trace, capacity: int) -> None:
    """The burst trace with the churn floor at several values: what protecting fresh loads costs or saves."""
    print(
        f"\nchurn floor on trace {trace.name!r} ({trace.about}). A refused request is a miss with no load "
        "here; in MOC it would wait or go to another device. Quick reloads: loads of a model evicted "
        f"at most {QUICK_RELOAD_S:g} s earlier."
    )
    print(f"{'min_residency_s':>15} {HEADER}")
    for floor in CHURN_FLOORS_S:
        for policy in POLICIES:
            outcome = simulate(trace, policy, capacity=capacity, min_residency_s=floor)
            print(f"{floor:15.0f} {row(trace.name, policy, outcome)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40_000, help="requests per trace")
    parser.add_argument("--models", type=int, default=100, help="models in each trace's catalogue")
    parser.add_argument("--capacity-gib", type=float, default=80.0)
    parser.add_argument("--seed", type=int, default=7)
    opts = parser.parse_args()
    started = time.perf_counter()
    capacity = int(opts.capacity_gib * GiB)
    traces = standard_traces(opts.seed, opts.requests, opts.models)
    models = traces[0].models
    print(
        f"{len(traces)} traces of {opts.requests:,} requests over {len(models)} models each "
        f"(0.5-40 GiB, load = {FIXED_LOAD_S:g} s + size at {LOAD_GIB_PER_S:g} GiB/s), "
        f"a request every {MEAN_GAP_S:g} s on average, seed {opts.seed}; "
        f"catalogue of the first: {sum(m.size_bytes for m in models) / GiB:,.0f} GiB"
    )
    summary = compare_policies(traces, capacity)
    print(
        f"\n{'trace':14} {'':38} {'GDSF-LRU':>8} {'load s':>9} {'GiB':>9} {'GDSF-':>9} {'load s':>11}"
        f"\n{'':14} {'':38} {'hit pp':>8} {'GDSF/LRU':>9} {'GDSF/LRU':>9} {'Belady pp':>9} "
        f"{'GDSF/Belady':>11}  GDSF beats LRU"
    )
    print("\n".join(summary))
    print(
        "Belady: offline, farthest next request first; with variable sizes it is the classic bound, "
        "not strictly optimal, and it maximises hits, not load seconds."
    )
    churn_floor(next(t for t in traces if t.name == "bursts"), capacity)
    print(f"\nran in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
