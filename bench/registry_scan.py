"""Registry figures: MOC's scan of 10,000 small model files, cold and warm, and header reads.

Writes a model root of small valid files of mixed formats (bench/_model_files.py: safetensors
files, Hugging Face folders with config, tokenizer and two shards, GGUF, ONNX with and without
external data, a few torch pickles), then runs MOC's real scan in this process (scanning.
scan_request + scan_run) against a scratch SQLite database, migrated first, and its own
redis-server (the scan's lock):

- cold scan: an empty registry, every header read. Target: 30 s or less.
- the checksum and validation tasks the scan queues on commit, run inline in the order one
  worker takes them off the queue (FIFO), and timed apart from the scan, which does not wait
  for them.
- warm re-scans after those tasks: nothing changed, so no header is read. Target: 2 s or less.
- header reads per file: MOC's formats.read_header next to each format's reference reader on
  the same files, interleaved (safetensors.safe_open metadata + keys, gguf.GGUFReader,
  onnx.load without external data, picklescan for pickles); p50 and p99 in microseconds.

    .venv/bin/python bench/registry_scan.py [--files 10000] [--sample 400] [--warm-runs 3]

"Cold" means an empty registry, not a cold page cache: the files were just written, so the
kernel holds them in memory (dropping its caches would slow the whole machine). Needs
redis-server; writes only in its scratch folder; the default run takes about a minute on two
cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _model_files  # noqa: E402
from tests.procs import RedisServer  # noqa: E402

COLD_TARGET_S = 30.0
WARM_TARGET_S = 2.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def setup_django(scratch: Path, models_root: Path, redis_url: str) -> None:
    """Point MOC at the scratch folder and Redis, then migrate its fresh SQLite database."""
    for name in ("DATABASE_URL", "MOC_SQLITE_PATH"):  # never a real database
        os.environ.pop(name, None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="moc_site.settings",
        MOC_VAR_DIR=str(scratch),
        MOC_MODEL_ROOTS=str(models_root),
        REDIS_URL=redis_url,
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


class InlineQueue:
    """Stands in for the broker: the registry's tasks, sent on commit, run here first in, first out."""

    def __init__(self) -> None:
        from apps.models import tasks

        self.messages: deque[tuple[str, Any]] = deque()
        # The bench runs the scan itself, right after requesting it.
        tasks.registry_scan.apply_async = lambda *args, **kwargs: None
        tasks.registry_checksum.delay = lambda file_ids: self.messages.append(("checksum", file_ids))
        tasks.registry_validate.delay = lambda version_id: self.messages.append(("validate", version_id))

    def drain(self) -> dict[str, list[float]]:
        """Run every message, including those the tasks send; seconds per run, by task."""
        from apps.models import scanning
        from apps.models.models import ModelVersion

        seconds: dict[str, list[float]] = {"checksum": [], "validate": []}
        while self.messages:
            task, arg = self.messages.popleft()
            started = time.perf_counter()
            # The bodies of tasks.registry_checksum and tasks.registry_validate.
            if task == "checksum":
                scanning.files_checksum(file_ids=arg)
            elif (version := ModelVersion.objects.filter(pk=arg).first()) is not None:
                scanning.version_validate(version=version)
            seconds[task].append(time.perf_counter() - started)
        return seconds


def scan_once() -> tuple[float, Any]:
    """One scan as the "Scan now" button and the worker run it; (seconds, the finished ScanRun)."""
    from apps.models import scanning

    started = time.perf_counter()
    scan = scanning.scan_run(scan=scanning.scan_request(user=None))
    return time.perf_counter() - started, scan


SCAN_HEADER = (
    f"{'scan':24} {'seconds':>8} {'files/s':>8} {'new':>6} {'changed':>8} {'unchanged':>10} "
    f"{'removed':>8} {'failed':>7} {'target':>9}  meets"
)


def scan_row(label: str, seconds: float, scan: Any, target: float) -> str:
    return (
        f"{label:24} {seconds:8.2f} {scan.files_seen / seconds:8.0f} {scan.new:6d} {scan.changed:8d} "
        f"{scan.unchanged:10d} {scan.removed:8d} {scan.failed:7d} {'<= ' + format(target, 'g') + ' s':>9}  "
        f"{'yes' if seconds <= target and scan.state == 'succeeded' else 'NO'}"
    )


def run_scans(opts: argparse.Namespace, expected_files: int) -> None:
    from apps.models.models import ModelFile, ModelVersion

    queue = InlineQueue()
    print(SCAN_HEADER)
    seconds, cold = scan_once()
    print(scan_row("cold (empty registry)", seconds, cold, COLD_TARGET_S), flush=True)
    if cold.state != "succeeded" or cold.new != expected_files or cold.errors:
        print(f"  the cold scan is not clean: state {cold.state}, errors {cold.errors[:3]}")
    queued = Counter(task for task, _ in queue.messages)

    tasks = queue.drain()
    for run in range(1, opts.warm_runs + 1):
        seconds, warm = scan_once()
        print(scan_row(f"warm re-scan {run}", seconds, warm, WARM_TARGET_S), flush=True)
        if queue.messages:
            print(f"  queued {len(queue.messages)} tasks although nothing changed")
            queue.drain()

    versions = ModelVersion.objects.count()
    states = Counter(ModelVersion.objects.values_list("validation_state", flat=True))
    hashed = ModelFile.objects.exclude(sha256="").count()
    print(
        f"\ntasks the cold scan queued on commit ({queued['checksum']} checksum chunks, "
        f"{queued['validate']} validations), run inline in FIFO order, with the ones they queue:"
    )
    print(f"{'task':22} {'runs':>7} {'seconds':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for task, runs in tasks.items():
        if runs:
            print(
                f"{task:22} {len(runs):7d} {sum(runs):8.2f} {percentile(runs, 0.5) * 1e3:8.2f} "
                f"{percentile(runs, 0.99) * 1e3:8.2f}"
            )
    print(
        f"{versions} versions: {', '.join(f'{n} {s}' for s, n in sorted(states.items()))}; "
        f"{hashed} of {ModelFile.objects.count()} files hashed"
    )


def reference_readers() -> dict[str, tuple[str, Callable[[Path], object]]]:
    """Per format: the reference reader's label, and a call that reads what MOC's reader reads."""
    import gguf
    import onnx
    from picklescan import scanner
    from safetensors import safe_open

    def safetensors_keys(path: Path) -> object:
        with safe_open(str(path), framework="numpy") as handle:
            return handle.metadata(), list(handle.keys())

    return {
        "safetensors": ("safe_open: metadata+keys", safetensors_keys),
        "shard index": ("json.loads", lambda path: json.loads(path.read_bytes())),
        "gguf": ("gguf.GGUFReader", lambda path: gguf.GGUFReader(path)),
        "onnx": ("onnx.load, no ext. data", lambda path: onnx.load(path, load_external_data=False)),
        "pickle": ("picklescan.scan_file_path", lambda path: scanner.scan_file_path(str(path))),
    }


def header_reads(by_format: dict[str, list[Path]], models_root: Path, sample: int) -> None:
    """Per-file read time, MOC's reader and the reference alternating first, on the same files."""
    from apps.models import formats

    print(f"\nheader read per file, µs (page cache warm; up to {sample} files per format, spread evenly)")
    print(
        f"{'format':12} {'files':>6} {'MOC p50':>8} {'MOC p99':>8} {'failed':>7}  "
        f"{'reference':26} {'ref p50':>8} {'ref p99':>8}"
    )
    roots = [models_root]
    for fmt, (label, reference) in reference_readers().items():
        paths = by_format.get(fmt, [])
        if not paths:
            continue
        step = max(1, len(paths) // sample)
        paths = paths[::step][:sample]
        readers: dict[str, Callable[[Path], Any]] = {
            "moc": lambda path: formats.read_header(path, roots=roots),
            "ref": reference,
        }
        for read in readers.values():
            read(paths[0])  # first calls import and warm caches
        micros: dict[str, list[float]] = {"moc": [], "ref": []}
        failed = 0
        for number, path in enumerate(paths):
            # Each reader goes first on every other file, so neither always finds a warmer cache.
            order = ["moc", "ref"] if number % 2 else ["ref", "moc"]
            for name in order:
                started = time.perf_counter_ns()
                result = readers[name](path)
                micros[name].append((time.perf_counter_ns() - started) / 1e3)
                if name == "moc" and result.failed:
                    failed += 1
        print(
            f"{fmt:12} {len(paths):6d} {percentile(micros['moc'], 0.5):8.0f} "
            f"{percentile(micros['moc'], 0.99):8.0f} {failed:7d}  {label:26} "
            f"{percentile(micros['ref'], 0.5):8.0f} {percentile(micros['ref'], 0.99):8.0f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=400, help="files per format for the header reads")
    parser.add_argument("--warm-runs", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moc-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        models_root = scratch / "models"
        redis = RedisServer(scratch / "redis")
        redis.start()
        try:
            started = time.perf_counter()
            written = _model_files.write_root(models_root, opts.files)
            kinds = ", ".join(
                f"{kind} {files}"
                + (f" ({written.units[kind]} folders)" if files != written.units[kind] else "")
                for kind, files in written.files.items()
            )
            print(
                f"{written.total} files, {written.total_bytes / 1e6:.0f} MB, written in "
                f"{time.perf_counter() - started:.1f} s: {kinds}\n",
                flush=True,
            )
            setup_django(scratch, models_root, redis.url)
            run_scans(opts, written.total)
            header_reads(written.by_format, models_root, opts.sample)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"\npeak RSS of the bench process: {peak:.0f} MiB")
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
