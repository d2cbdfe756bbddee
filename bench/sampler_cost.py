"""What sampling devices costs a worker: CPU seconds per device per hour at 1 Hz.

For each backend that can run here (cpu; sim with 8 devices; nvml where a driver is present)
runs the agent's per-sample work at the real interval for a while: read every device, turn
the readings into the message's device list, encode it once as JSON. The process's CPU time
(time.process_time) over that run, divided by devices and scaled to an hour, is the figure;
a tight loop of the same work gives the cost of one sample without the sleeps in between.
Target: at most 1% of one core per device.

    .venv/bin/python bench/sampler_cost.py [--seconds 20] [--sim-devices 8]

Only the device layer: no Django, no Redis, no network. Publishing and storing are the
agent's and are not counted here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.fleet.devices.base import BackendUnavailable, DeviceBackend, SimLoad  # noqa: E402
from apps.fleet.devices.cpu import CpuBackend  # noqa: E402
from apps.fleet.devices.nvml import NvmlBackend  # noqa: E402
from apps.fleet.devices.sim import SimBackend  # noqa: E402

GiB = 1024**3
TARGET_PCT = 1.0
TIGHT_CPU_S = 2.0


def one_sample(backend: DeviceBackend) -> str:
    """The sampler's work for one tick, up to the encoded text the agent publishes."""
    readings = backend.sample(time.time())
    return json.dumps([r.as_message() for r in readings], separators=(",", ":"))


def paced(backend: DeviceBackend, seconds: float, interval: float) -> tuple[int, float, float]:
    """Samples at `interval` for `seconds`; returns (samples, CPU seconds, wall seconds)."""
    one_sample(backend)  # first reads prime counters and caches
    ticks = max(1, round(seconds / interval))
    wall0, cpu0 = time.monotonic(), time.process_time()
    for tick in range(1, ticks + 1):
        one_sample(backend)
        time.sleep(max(0.0, wall0 + tick * interval - time.monotonic()))
    return ticks, time.process_time() - cpu0, time.monotonic() - wall0


def tight(backend: DeviceBackend) -> float:
    """CPU seconds one sample takes, samples back to back."""
    count, cpu0 = 0, time.process_time()
    while time.process_time() - cpu0 < TIGHT_CPU_S:
        one_sample(backend)
        count += 1
    return (time.process_time() - cpu0) / count


def backends(sim_devices: int) -> list[tuple[str, DeviceBackend | str]]:
    """What can run here, or why not."""
    busy = {
        i: SimLoad(placed_bytes=20 * GiB, running_jobs=1, requests_per_s=5.0)
        for i in range(0, sim_devices, 2)
    }
    found: list[tuple[str, DeviceBackend | str]] = [
        ("cpu", CpuBackend("bench")),
        (f"sim ({sim_devices} devices)", SimBackend("bench", [(sim_devices, 80 * GiB)], load=lambda: busy)),
    ]
    try:
        found.append(("nvml", NvmlBackend("bench")))
    except BackendUnavailable as exc:
        found.append(("nvml", f"no driver here ({exc})"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="paced run per backend")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--sim-devices", type=int, default=8)
    opts = parser.parse_args()
    rate = 1.0 / opts.interval
    print(
        f"{'backend':18} {'devices':>7} {'samples':>7} {'CPU s/dev/h':>12} {'% core/dev':>11} "
        f"{'tight µs/sample':>16} {'tight CPU s/dev/h':>18} {'≤ 1%':>5}"
    )
    for label, backend in backends(opts.sim_devices):
        if isinstance(backend, str):
            print(f"{label}: {backend}")
            continue
        try:
            devices = len(backend.devices())
            samples, cpu_s, wall_s = paced(backend, opts.seconds, opts.interval)
            per_sample = tight(backend)
        finally:
            backend.close()
        share = cpu_s / wall_s / devices  # of one core, per device, at the paced rate
        tight_share = per_sample * rate / devices
        print(
            f"{label:18} {devices:7d} {samples:7d} {share * 3600:12.2f} {share * 100:11.3f} "
            f"{per_sample * 1e6:16.0f} {tight_share * 3600:18.2f} "
            f"{'yes' if max(share, tight_share) * 100 <= TARGET_PCT else 'NO':>5}",
            flush=True,
        )
    print(f"at {rate:g} Hz; paced: the process's CPU time with each wake-up; tight: one sample's work alone")


if __name__ == "__main__":
    main()
