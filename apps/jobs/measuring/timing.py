"""Timing generation on a model loaded by serving's runtimes: first-token and per-token latency,
whole-request latency, throughput and peak memory, at a batch size and prompt length.

How it is timed:

- Each request is a greedy completion through the runtime's own `complete()`, with its streaming
  listener (`on_delta`): the transformers runtime tells it once per generated token, so the first
  call after the request began is the first token (TTFT) and the gaps between calls are the
  per-token latencies. A runtime that tells it once per choice (llama.cpp) gets a second request
  of one token for its TTFT, and its per-token latency is the rest of the request over the rest of
  its tokens.
- A batch of N is N requests at once from N threads, which is how a device worker serves N
  requests in flight (its thread pool; the runtimes decode each request on its own, they have no
  batched decode): throughput is all their tokens over the batch's wall time.
- Peak memory: on CUDA torch's `max_memory_allocated` since a reset before the point's runs (the
  tensors, not the allocator's cache); on the CPU the process's peak resident set (VmHWM) since a
  reset through /proc/self/clear_refs, or, where that cannot be reset, since the process started.

No Django here; the benchmark runner and bench/device_check.py both call `measure`.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TORCH_PEAK = "torch_max_allocated"
RSS_PEAK = "rss_peak"
RSS_PEAK_SINCE_START = "rss_peak_since_process_start"
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_HWM = re.compile(r"VmHWM:\s+(\d+)\s+kB")
# Ids a made-up prompt is drawn from start past the first few (often special tokens).
_FIRST_ID = 10


@dataclass(frozen=True, slots=True)
class Timed:
    """One request: when its first token came, the gaps between the later ones, its whole time."""

    ttft_ms: float
    token_ms: list[float]
    total_ms: float
    tokens: int
    began: float = 0.0  # time.perf_counter() when it was sent
    ended: float = 0.0  # ... and when its answer was complete


@dataclass
class Point:
    """The timed runs at one batch size and prompt length."""

    batch: int
    prompt_tokens: int
    new_tokens: int
    requests: list[Timed] = field(default_factory=list)
    walls_s: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    def figures(self) -> dict[str, Any]:
        ttft = [r.ttft_ms for r in self.requests]
        gaps = [gap for r in self.requests for gap in r.token_ms]
        tokens = sum(r.tokens for r in self.requests)
        return {
            "batch": self.batch,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "generated_mean": round(tokens / len(self.requests), 2) if self.requests else 0,
            "ttft_ms_p50": _rounded(percentile(ttft, 0.5)),
            "ttft_ms_p99": _rounded(percentile(ttft, 0.99)),
            "token_ms_p50": _rounded(percentile(gaps, 0.5)),
            "token_ms_p99": _rounded(percentile(gaps, 0.99)),
            "latency_ms_p50": _rounded(percentile([r.total_ms for r in self.requests], 0.5)),
            "latency_ms_p99": _rounded(percentile([r.total_ms for r in self.requests], 0.99)),
            "tokens_per_s": round(tokens / sum(self.walls_s), 2) if sum(self.walls_s) else None,
            "peak_memory_bytes": self.peak_bytes,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile of `values` by linear interpolation between the closest ranks (None for none)."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return float(cuts[min(98, max(0, round(q * 100) - 1))]) if q < 1 else float(max(values))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def prompt_ids(length: int, *, vocab: int) -> list[int]:
    """A made-up prompt of exactly `length` token ids, the same every time."""
    span = max(1, vocab - _FIRST_ID)
    return [_FIRST_ID + (i * 7919) % span for i in range(length)]


def _greedy(
    loaded: Any, prompt: list[int] | str, new_tokens: int, *, on_delta: Callable[..., None] | None = None
) -> dict[str, Any]:
    """The runtime's own completion of one prompt, greedy (the same tokens every time), up to
    `new_tokens` tokens; `on_delta` hears its stream."""
    answer: dict[str, Any] = loaded.complete(
        prompts=[prompt],
        max_tokens=new_tokens,
        temperature=0.0,
        top_p=1.0,
        n=1,
        stop=[],
        seed=0,
        echo=False,
        logprobs=None,
        deadline=None,
        on_delta=on_delta,
    )
    return answer


def one_request(loaded: Any, prompt: list[int] | str, new_tokens: int) -> Timed:
    """One greedy completion of up to `new_tokens` tokens, timed by its stream (see the module)."""
    told: list[float] = []

    def on_delta(index: int, text: str, tokens: Any, finish: str | None) -> None:
        if finish is None:
            told.append(time.perf_counter())

    began = time.perf_counter()
    answer = _greedy(loaded, prompt, new_tokens, on_delta=on_delta)
    ended = time.perf_counter()
    tokens = int(answer["usage"]["completion_tokens"])
    total_ms = (ended - began) * 1000
    if tokens and len(told) >= tokens:  # told once per token
        gaps = [(b - a) * 1000 for a, b in zip(told, told[1:], strict=False)]
        return Timed((told[0] - began) * 1000, gaps, total_ms, tokens, began, ended)
    first = one_request_ttft(loaded, prompt)
    rest = max(0.0, total_ms - first)
    per_token = [rest / (tokens - 1)] * (tokens - 1) if tokens > 1 else []
    return Timed(first, per_token, total_ms, tokens, began, ended)


def one_request_ttft(loaded: Any, prompt: list[int] | str) -> float:
    """A request of one token's whole time: the first-token latency of a runtime without a token stream."""
    began = time.perf_counter()
    _greedy(loaded, prompt, 1)
    return (time.perf_counter() - began) * 1000


def batch(loaded: Any, prompt: list[int] | str, new_tokens: int, size: int) -> tuple[list[Timed], float]:
    """`size` requests at once, one thread each, started together; their timings and the wall time.
    A batch of one runs in a thread of its own too: a worker's requests never run in its main thread."""
    start = threading.Barrier(size + 1)
    results: list[Timed | BaseException] = [RuntimeError("did not run")] * size

    def request(i: int) -> None:
        start.wait()
        try:
            results[i] = one_request(loaded, prompt, new_tokens)
        except BaseException as exc:  # re-raised in the caller's thread below
            results[i] = exc

    threads = [threading.Thread(target=request, args=(i,), name=f"moc-bench-{i}") for i in range(size)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    timed = [r for r in results if isinstance(r, Timed)]
    # From the first request sent to the last answer complete, as the requests' own threads saw it.
    return timed, max(t.ended for t in timed) - min(t.began for t in timed)


class PeakMemory:
    """The peak memory of the runs between `reset()` and `read()` (see the module for the meter)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")
        self.meter = TORCH_PEAK if self.cuda else RSS_PEAK

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS (Linux)
        except OSError:
            self.meter = RSS_PEAK_SINCE_START

    def read(self) -> int | None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            found = _HWM.search(_STATUS.read_text())
        except OSError:
            return None
        return int(found.group(1)) * 1024 if found else None


# Told after each timed batch: (runs done, runs in all, tokens generated by it).
Progress = Callable[[int, int, int], None]


def measure(
    loaded: Any,
    *,
    prompts: Callable[[int], list[int] | str],
    batch_sizes: Sequence[int],
    prompt_lengths: Sequence[int],
    new_tokens: int,
    repeats: int,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Every batch size x prompt length: one warm-up batch, then `repeats` timed ones. `prompts(n)`
    makes a prompt of n tokens. Returns {"runs": [Point.figures()...], "peak_memory_bytes",
    "peak_meter"}."""
    peak = PeakMemory(loaded.device)
    total = len(batch_sizes) * len(prompt_lengths) * (repeats + 1)
    done = 0
    points: list[Point] = []
    overall: int | None = None
    for size in batch_sizes:
        for length in prompt_lengths:
            prompt = prompts(length)
            point = Point(size, len(prompt) if isinstance(prompt, list) else length, new_tokens)
            peak.reset()
            for repeat in range(repeats + 1):
                timed, wall = batch(loaded, prompt, new_tokens, size)
                if repeat:  # the first is the warm-up
                    point.requests.extend(timed)
                    point.walls_s.append(wall)
                done += 1
                if on_progress is not None:
                    on_progress(done, total, sum(t.tokens for t in timed))
            point.peak_bytes = peak.read()
            overall = max(filter(None, (overall, point.peak_bytes)), default=None)
            points.append(point)
    return {"runs": [p.figures() for p in points], "peak_memory_bytes": overall, "peak_meter": peak.meter}
