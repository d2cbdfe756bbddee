"""The device check for a machine with an NVIDIA GPU: what MOC's own code sees and measures there.

1. NVML sampling through MOC's NVML backend (apps.fleet.devices.nvml): the driver, each GPU, and two
   readings a second apart (memory, utilisation, temperature, power, the processes on it).
2. A load and unload of the demo LM through MOC's serving runtime (apps.serving.runtimes) on cuda:0,
   with the bytes torch's allocator measured for the load and what the unload gave back.
3. A fine-tune step on CUDA: the job's loader (apps.jobs.training.loading) with trainable weights,
   rows encoded and batched by apps.jobs.training.data, one AdamW step, the loss before and after.
4. A benchmark run: the benchmark job's timing code (apps.jobs.measuring.timing) on the loaded LM.

Without a GPU it says so plainly, runs 2-4 on the CPU (so the script itself is checked), and exits 0.
The demo LM is made into a temp folder unless --model names one (a Hugging Face causal LM folder).

    .venv/bin/python bench/device_check.py [--model PATH] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from apps.core.domain.units import format_bytes  # noqa: E402
from apps.fleet.devices import BackendUnavailable  # noqa: E402
from apps.jobs.domain.datasets import Example, Shape  # noqa: E402
from apps.jobs.measuring import timing  # noqa: E402
from apps.jobs.training.data import batches, encode  # noqa: E402
from apps.jobs.training.loading import load_causal_lm  # noqa: E402
from apps.models.demo import CORPUS  # noqa: E402
from apps.serving import runtimes  # noqa: E402


def say(line: str = "") -> None:
    print(line, flush=True)


def nvml_check() -> bool:
    """Two readings through MOC's NVML backend; False (and why) where NVML cannot be opened."""
    say("== 1. NVML sampling (apps.fleet.devices.nvml.NvmlBackend)")
    try:
        from apps.fleet.devices.nvml import NvmlBackend
    except ImportError as exc:
        say(f"   NO GPU CHECK: nvidia-ml-py is not importable ({exc})")
        return False
    try:
        backend = NvmlBackend("device-check")
    except BackendUnavailable as exc:
        say(f"   NO NVIDIA GPU: NVML could not be opened ({exc}); this machine has no usable NVIDIA driver")
        return False
    try:
        info = backend.node_info()
        say(f"   driver {info.driver_version}, CUDA {info.cuda_version}, {len(backend.devices())} GPU(s)")
        for device in backend.devices():
            say(
                f"   GPU {device.index}: {device.name} {device.uuid}"
                f" {format_bytes(device.memory_total_bytes)}"
            )
        for n in range(2):
            for r in backend.sample(time.time()):
                procs = ", ".join(f"pid {p.pid} {format_bytes(p.used_bytes)}" for p in r.processes) or "none"
                say(
                    f"   reading {n + 1} GPU {r.index}: used {format_bytes(r.mem_used_bytes or 0)} of"
                    f" {format_bytes(r.mem_total_bytes)}, util {r.gpu_util}%, {r.temperature_c} C,"
                    f" {r.power_w} W of {r.power_limit_w} W, SM {r.sm_clock_mhz} MHz; processes: {procs}"
                    + (f"; ERROR {r.error}" if r.error else "")
                )
            time.sleep(1.0)
    finally:
        backend.close()
    return True


def demo_lm(into: Path) -> Path:
    from apps.models.demo import lm

    folder = into / "demo-gpt2"
    with lm.quiet():
        training = lm.make(folder, steps=200)
    say(f"   made the demo LM in {folder}: {training.summary()}")
    return folder


def load_unload(model: Path, device: str) -> None:
    say(f"== 2. Load and unload through MOC's runtime on {device}")
    before = torch.cuda.memory_allocated(device) if device.startswith("cuda") else None
    loaded = runtimes.load(runtimes.LoadSpec(path=str(model), format="hf", kind="causal-lm", device=device))
    facts = loaded.describe()
    say(
        f"   loaded in {loaded.load_seconds * 1000:.1f} ms: measured {loaded.measured_bytes:,} bytes"
        f" (weights {loaded.weights_bytes:,}); {facts['params']:,} params, {facts['dtype']}"
    )
    if before is not None:
        say(
            f"   torch.cuda.memory_allocated: {before:,} before,"
            f" {torch.cuda.memory_allocated(device):,} loaded"
        )
    answer = loaded.generate(
        prompt="The", max_new_tokens=8, temperature=0.0, top_p=1.0, stop=[], seed=0, deadline=None
    )
    say(f"   greedy answer to 'The': {answer['text']!r}")
    unloaded = loaded.close()
    say(
        f"   unloaded: freed {unloaded.freed_bytes:,} bytes, verified {unloaded.verified} ({unloaded.detail})"
    )
    if before is not None:
        say(f"   torch.cuda.memory_allocated after the unload: {torch.cuda.memory_allocated(device):,}")


def fine_tune_step(model: Path, device: str) -> None:
    say(f"== 3. A fine-tune step on {device} (the job's loader and data code, one AdamW step)")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    lm = load_causal_lm(path=str(model), device=device, trainable=True)
    lines = [line for line in CORPUS.read_text().splitlines() if line.strip()][:16]
    rows = encode(
        [Example(row=i, shape=Shape.TEXT, completion=line) for i, line in enumerate(lines, 1)],
        lm.tokenizer,
        seq_len=64,
        dataset="corpus",
    )
    batch = {
        k: v.to(device)
        for k, v in next(batches(rows, batch_size=8, pad_id=lm.tokenizer.pad_token_id)).items()
    }
    optimiser = torch.optim.AdamW(lm.model.parameters(), lr=1e-3)
    started = time.perf_counter()
    loss = lm.model(**batch).loss
    loss.backward()
    optimiser.step()
    optimiser.zero_grad()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    took = time.perf_counter() - started
    with torch.no_grad():
        after = lm.model(**batch).loss
    say(f"   loss {loss.item():.4f} -> {after.item():.4f} after one step ({took * 1000:.1f} ms)")
    on = next(lm.model.parameters()).device
    say(f"   parameters on {on}; trainable {lm.trainable_params():,}")
    if device.startswith("cuda"):
        say(f"   torch.cuda.max_memory_allocated: {torch.cuda.max_memory_allocated(device):,} bytes")
    del lm, optimiser, batch, loss, after


def benchmark(model: Path, device: str, repeats: int) -> dict[str, Any]:
    say(f"== 4. A benchmark run on {device} (apps.jobs.measuring.timing)")
    loaded = runtimes.load(runtimes.LoadSpec(path=str(model), format="hf", kind="causal-lm", device=device))
    vocab = loaded.describe()["vocab_size"]
    try:
        figures = timing.measure(
            loaded,
            prompts=lambda n: timing.prompt_ids(n, vocab=vocab),
            batch_sizes=(1, 4),
            prompt_lengths=(16, 64),
            new_tokens=16,
            repeats=repeats,
        )
    finally:
        loaded.close()
    for run in figures["runs"]:
        say(
            f"   batch {run['batch']} prompt {run['prompt_tokens']}: TTFT p50 {run['ttft_ms_p50']} ms"
            f" p99 {run['ttft_ms_p99']} ms, token p50 {run['token_ms_p50']} ms p99 {run['token_ms_p99']} ms,"
            f" {run['tokens_per_s']} tokens/s, peak {format_bytes(run['peak_memory_bytes'] or 0)}"
        )
    say(f"   peak memory {figures['peak_memory_bytes']:,} bytes by {figures['peak_meter']}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, help="a Hugging Face causal LM folder (default: make the demo LM)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    nvml = nvml_check()
    cuda = torch.cuda.is_available()
    if cuda:
        say(
            f"== torch {torch.__version__} sees {torch.cuda.device_count()} CUDA device(s):"
            f" {torch.cuda.get_device_name(0)}"
        )
    else:
        say(f"== NO GPU: torch {torch.__version__} sees no CUDA device; parts 2-4 run on the CPU instead")
    device = "cuda:0" if cuda else "cpu"
    with tempfile.TemporaryDirectory(prefix="moc-device-check-") as tmp:
        model = args.model or demo_lm(Path(tmp))
        load_unload(model, device)
        fine_tune_step(model, device)
        figures = benchmark(model, device, args.repeats)
    verdict = {"nvml": nvml, "cuda": cuda, "device": device, "runs": len(figures["runs"])}
    say(f"== SUMMARY {json.dumps(verdict)}")
    if not (nvml and cuda):
        say("== No NVIDIA GPU here: NVML and CUDA were not checked; the CPU parts ran.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
