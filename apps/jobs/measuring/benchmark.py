"""The benchmark runner: a version loaded by serving's runtimes the way a device worker loads it, timed
(apps.jobs.measuring.timing), unloaded, and its figures made the version's performance baseline.

The baseline (ModelVersion.benchmark, through services.version_record_benchmark) has this shape:

    {"at": ISO time, "job": id,
     "device": {"label", "kind", "simulated"},
     "load_s": the runtime's load time, "memory_bytes": what the load took by "memory_meter"
        (apps.serving.runtimes.memory: "torch" on CUDA, "rss" on the CPU),
     "unload": {"freed_bytes", "verified", "detail"},
     "runs": [{"batch", "prompt_tokens", "new_tokens", "generated_mean", "ttft_ms_p50", "ttft_ms_p99",
               "token_ms_p50", "token_ms_p99", "latency_ms_p50", "latency_ms_p99", "tokens_per_s",
               "peak_memory_bytes"}, ...],
     "peak_memory_bytes", "peak_meter" ("torch_max_allocated" | "rss_peak" | ...),
     "ttft_ms_p50", "token_ms_p50", "latency_ms_p50", "latency_ms_p99": the run nearest a single
        request, at the smallest batch (batch 1 when it was asked for) with the shortest prompt, whose
        "batch" and "prompt_tokens" say which ("single": {"batch", "prompt_tokens"}),
     "probe": {"prompt", "max_new_tokens", "ms_p50", "ms_p99"}: the deployments' own probe request
        (apps.serving.domain.probe) timed in the runtime, without the network: what the deployments'
        performance check holds a release's probes to (apps.deployments.domain.performance, which
        adds an allowance for the serving path, and estimates from the first-token and per-token
        figures at batch 1 only for a baseline without it)}
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from apps.jobs.devices import Where, job_device
from apps.jobs.domain import params as job_params
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.params import BenchmarkParams
from apps.jobs.measuring import timing
from apps.jobs.models import Job
from apps.jobs.reporting import Outcome, Report
from apps.models import services as model_services
from apps.models.models import ModelVersion
from apps.serving import runtimes
from apps.serving.domain.probe import PROBE_NEW_TOKENS, PROBE_PROMPT
from apps.serving.placing import profile_for
from apps.serving.runtimes import memory


def run(job: Job, report: Report) -> Outcome:
    params: BenchmarkParams = job_params.from_stored(JobKind.BENCHMARK, job.params)
    version = ModelVersion.objects.select_related("model", "parent").get(pk=params.version)
    where = job_device(job)
    report.progress(0.01, f"Loading {version} on {where.torch}")
    held = load(version, where)
    if isinstance(held, str):
        return Outcome({"version": version.pk}, ErrorClass.CHECK_FAILED, held)
    loaded, base = held
    try:
        figures = _measure(loaded, params, report)
    finally:
        unloaded = loaded.close()
        if base is not None:
            base.close()
    baseline = {
        "at": timezone.now().isoformat(),
        "job": job.pk,
        "device": where.describe(),
        "load_s": round(loaded.load_seconds, 4),
        "memory_bytes": loaded.measured_bytes,
        "memory_meter": memory.meter_for(where.torch, torch_allocator=loaded.runtime == "transformers"),
        "unload": {
            "freed_bytes": unloaded.freed_bytes,
            "verified": unloaded.verified,
            "detail": unloaded.detail,
        },
        **figures,
    }
    model_services.version_record_benchmark(version=version, figures=baseline)
    report.log(
        f"Baseline of {version}: first token {baseline['ttft_ms_p50']} ms, "
        f"{baseline['token_ms_p50']} ms a token, a request {baseline['latency_ms_p50']} ms (p50)",
        data={"runs": baseline["runs"]},
    )
    return Outcome({"version": version.pk, **baseline})


def load(version: ModelVersion, where: Where) -> tuple[Any, Any] | str:
    """The version loaded as a device worker loads it (an adapter on its parent, loaded first):
    (loaded, its base or None), or why it cannot be benchmarked."""
    base = None
    if version.kind == "adapter":
        if version.parent is None:
            return f"{version} is an adapter without a parent version to load it on"
        base = runtimes.load(_spec(version.parent, where))
    try:
        return runtimes.load(_spec(version, where, base=base)), base
    except BaseException:
        if base is not None:
            base.close()
        raise


def _spec(version: ModelVersion, where: Where, base: Any = None) -> runtimes.LoadSpec:
    profile = profile_for(version)
    return runtimes.LoadSpec(
        path=version.path,
        format=version.format,
        kind=version.kind,
        device=where.torch,
        allow_pickle=bool(profile and profile.allow_pickle),
        base=base,
    )


def _measure(loaded: Any, params: BenchmarkParams, report: Report) -> dict[str, Any]:
    context = getattr(loaded, "context_length", None)
    vocab = loaded.describe().get("vocab_size") or 256
    # A prompt and its new tokens must fit the context: longer prompts are cut to what fits.
    room = (context - params.new_tokens) if context else None
    if room is not None and room < 1:
        raise ValueError(f"new_tokens {params.new_tokens} leaves no room in the model's context of {context}")
    lengths = sorted({n if room is None else min(n, room) for n in params.prompt_lengths})
    tokens_in = loaded.runtime == "transformers"

    def prompts(n: int) -> list[int] | str:
        # The transformers runtime takes token ids, so a prompt is exactly n tokens; others get n words.
        return timing.prompt_ids(n, vocab=vocab) if tokens_in else " ".join(["hello"] * n)

    def progress(done: int, total: int, tokens: int) -> None:
        if stop := report.step(step=done, total=total + 1, tokens=tokens, message="Timing generation"):
            report.stop_now(stop)  # nothing to save: a benchmark starts again from its load

    figures = timing.measure(
        loaded,
        prompts=prompts,
        batch_sizes=sorted(set(params.batch_sizes)),
        prompt_lengths=lengths,
        new_tokens=params.new_tokens,
        repeats=params.repeats,
        on_progress=progress,
    )
    timed = [timing.one_request(loaded, PROBE_PROMPT, PROBE_NEW_TOKENS) for _ in range(params.repeats + 1)]
    probe = timed[1:]  # the first is the warm-up
    first = min(figures["runs"], key=lambda r: (r["batch"], r["prompt_tokens"]))
    return {
        **figures,
        "single": {"batch": first["batch"], "prompt_tokens": first["prompt_tokens"]},
        "ttft_ms_p50": first["ttft_ms_p50"],
        "token_ms_p50": first["token_ms_p50"],
        "latency_ms_p50": first["latency_ms_p50"],
        "latency_ms_p99": first["latency_ms_p99"],
        "probe": {
            "prompt": PROBE_PROMPT,
            "max_new_tokens": PROBE_NEW_TOKENS,
            "ms_p50": round(timing.percentile([t.total_ms for t in probe], 0.5) or 0.0, 3),
            "ms_p99": round(timing.percentile([t.total_ms for t in probe], 0.99) or 0.0, 3),
        },
    }
