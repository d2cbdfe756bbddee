"""Rollouts on a real MOC: how fast a blue-green rollback takes traffic back, how long a full canary
of the tiny demo model takes, and how long each verification check takes.

Starts a scratch MOC on loopback (its own var/ dir, redis-server, migrated SQLite), as
scripts/run.sh runs it: gunicorn, a device worker (a simulated GPU, thread pool), a default worker
(verification runs, ticks) and celery beat (releases_advance every 2 s moves canaries on). Its model
root gets the demo models, the demo LM's bad variants, and a copy of the demo LM, registered by a
scan as versions of demo-gpt2 (tests/integration/releases.py); the copy is the good new version
released below. Everything else goes through MOC's API with an operator's key, while
--threads threads ask the deployment through POST /api/v1/deployments/<name>/infer/.

1. Rollback time (--rounds times): the copy released blue-green and promoted; under the load, POST
   .../releases/<id>/rollback/; the time from sending it until every answer comes from the previous
   version, read from the answers themselves (the end of the last answer the rolled-back version
   gave). Target: at most 5 s.
2. A full canary of the copy through steps 10, 50, 100 with verification (every check required, a
   golden set of the stable release's greedy answers), step pauses set to zero, min_samples as the
   deployment's default: from the release asked for to promoted, and each phase from the
   release's timeline. Target: at most 60 s.
3. The verification suite's duration per check, over every run the bench made.

    .venv/bin/python bench/rollout.py [--rounds 3] [--threads 2]

Needs redis-server and the demo extra. Loopback only; every wait is bounded; a few minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._moc import NODE, QUEUE, ScratchMOC  # noqa: E402
from tests.integration.load import Answer, Load  # noqa: E402
from tests.procs import gunicorn_command, python, wait_until  # noqa: E402

COPY = "demo-gpt2-copy"
GOLDEN_PROMPTS = ("The fleet", "The registry", "A model")
SETTLED = {"promoted", "paused", "aborted", "rolled_back", "failed", "cancelled"}

SETUP = f"""
import json, shutil
from pathlib import Path
from django.conf import settings
from django.contrib.auth import get_user_model
from apps.core import roles, services
from apps.core.domain.roles import Role
from apps.models import demo
from apps.models.demo.variants import make_variants
from tests.integration.releases import register_demo
root = Path(settings.MOC_MODEL_ROOTS[0])
demo.make(root, force=False, log=lambda line: None)
make_variants(root, log=lambda line: None)
if not (root / "{COPY}").exists():
    shutil.copytree(root / demo.BASE, root / "{COPY}")
versions = register_demo(demo_root=root, variants_root=root, also=[root / "{COPY}"])
user = get_user_model().objects.create_user("bench", password="bench-pass-1")
roles.set_role(user, Role.OPERATOR)
_, secret = services.api_key_create(owner=user, name="bench", role=Role.OPERATOR, acting_role=Role.OPERATOR)
print(json.dumps({{
    "key": secret,
    "versions": {{n: v.pk for n, v in versions.items()}},
    "model": versions[demo.BASE].model_id,
    "states": [v.validation_state for v in versions.values()],
}}))
"""


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Scratch(ScratchMOC):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, SETUP)
        if set(self.setup["states"]) != {"valid"}:
            raise RuntimeError(f"the versions did not all validate: {self.setup}")
        self.versions: dict[str, int] = self.setup["versions"]
        self.start("gunicorn", gunicorn_command(self.port))
        worker = ["-m", "celery", "-A", "moc_site", "worker", "--without-gossip", "--without-mingle"]
        self.start(
            "device-worker",
            [python(), *worker, "-Q", QUEUE, "-n", f"{QUEUE}@%h", "-P", "threads", "-c", "4"],
        )
        self.start("default-worker", [python(), *worker, "-Q", "default", "-n", "default@%h", "-c", "2"])
        self.start(
            "beat",
            [python(), "-m", "celery", "-A", "moc_site", "beat", "--loglevel", "WARNING"]
            + ["--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]
            + ["--pidfile", str(folder / "celerybeat.pid")],
        )
        self.wait_serving()
        wait_until(lambda: self.http.get("/api/v1/devices/").json()["count"], 60, "the device to register")

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.post(path, json=body or {})
        if response.status_code >= 300:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text}")
        return response.json()

    def deployment(self, name: str, **fields: Any) -> str:
        self.post(
            "/api/v1/deployments/",
            {"name": name, "registered_model": self.setup["model"], "node": NODE, "replicas": 1, **fields},
        )
        return name

    def release(self, deployment: str, version: str, strategy: str) -> dict[str, Any]:
        body = {"deployment": deployment, "model_version": self.versions[version], "strategy": strategy}
        return self.post("/api/v1/releases/", body)

    def settled(self, release: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.http.get(f"/api/v1/releases/{release['id']}/").json())
            return found["state"] in SETTLED

        wait_until(done, timeout, f"release {release['id']} to settle", interval=0.2)
        return found

    def events(self, release_id: int) -> list[dict[str, Any]]:
        return self.http.get(f"/api/v1/releases/{release_id}/events/", params={"page_size": 500}).json()[
            "results"
        ]

    def runs(self) -> list[dict[str, Any]]:
        return self.http.get("/api/v1/verification-runs/", params={"page_size": 500}).json()["results"]


def golden_set(scratch: Scratch, deployment: str) -> int:
    """Give the deployment a golden set, the greedy answers its live release gives now to a few
    prompts (the copy has the same weights, so its quality check passes), so that the canary's
    verification runs the quality check too; how many items."""
    items = []
    for prompt in GOLDEN_PROMPTS:
        body = {"task": "generate", "input": {"prompt": prompt, "max_new_tokens": 12, "temperature": 0}}
        answer = scratch.post(f"/api/v1/deployments/{deployment}/infer/", body)
        items.append({"prompt": prompt, "expected": answer["result"]["text"], "max_new_tokens": 12})
    response = scratch.http.patch(f"/api/v1/deployments/{deployment}/", json={"golden_set": items})
    if response.status_code != 200:
        raise RuntimeError(f"the golden set was refused: {response.status_code} {response.text}")
    return len(items)


def rollback_round(scratch: Scratch, load: Load, deployment: str) -> dict[str, Any]:
    """The copy released blue-green under the load, promoted, then rolled back; the figures."""
    green = scratch.settled(scratch.release(deployment, COPY, "blue_green"))
    if green["state"] != "promoted":
        raise RuntimeError(f"the blue-green release did not promote: {green['state']}: {green['reason']}")
    wait_until(
        lambda: any(a.release == green["id"] for a in load.since(time.time() - 1)), 30, "green answers"
    )
    time.sleep(1.0)
    asked = time.time()
    scratch.post(f"/api/v1/releases/{green['id']}/rollback/", {"reason": "bench: rollback time"})
    answered = time.time()
    wait_until(lambda: len(load.since(asked + 2)) >= 10, 30, "answers after the rollback")
    window = [a for a in load.answers if a.ended >= asked - 2]
    from_green = [a for a in window if a.release == green["id"] and a.ended >= asked]
    last_green = max((a.ended for a in from_green), default=asked)
    blue = green["previous_release"]["id"]
    first_blue = min(a.ended for a in load.since(asked) if a.release == blue)
    return {
        "api_ms": (answered - asked) * 1000,
        "first_previous_s": first_blue - asked,
        "last_rolled_back_s": last_green - asked,
        # From here on every answer is the previous version's, and one has come.
        "all_previous_s": max(first_blue, last_green) - asked,
        "green_after": len(from_green),
        "window": window,
    }


def canary(scratch: Scratch, load: Load, deployment: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    began = time.time()
    release = scratch.settled(scratch.release(deployment, COPY, "canary"))
    took = time.time() - began
    release["bench_seconds"] = took
    return release, scratch.events(release["id"])


def phases(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """(phase, seconds) from the release's timeline: each state it was in, and each canary step."""
    marks: list[tuple[str, float]] = []
    for event in events:
        if event["kind"] == "transition" and event["to_state"]:
            marks.append((event["to_state"], at(event["at"])))
        elif event["kind"] == "traffic":
            marks.append((f"step at {event['traffic_percent']}%", at(event["at"])))
    return [(name, following[1] - stamp) for (name, stamp), following in zip(marks, marks[1:], strict=False)]


def print_rollback(rounds: list[dict[str, Any]]) -> None:
    print("\n## 1. Blue-green rollback under steady load\n")
    print("Seconds from sending POST .../rollback/ (answers' end times, as the load threads saw them).\n")
    print(
        "| round | API call ms | first answer from previous | last from rolled-back"
        " | 100% from previous | rolled-back answers after the call |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, r in enumerate(rounds, 1):
        print(
            f"| {i} | {r['api_ms']:.0f} | {r['first_previous_s']:.3f} | {r['last_rolled_back_s']:.3f}"
            f" | {r['all_previous_s']:.3f} | {r['green_after']} |"
        )
    worst = max(r["all_previous_s"] for r in rounds)
    window = [a for r in rounds for a in r["window"]]
    print(f"\nWorst: {worst:.3f} s until 100% of answers came from the previous version (target <= 5 s).")
    print(f"Answers from 2 s before each rollback on: {failures(window)} not 200.")


def print_canary(release: dict[str, Any], events: list[dict[str, Any]]) -> None:
    print("\n## 2. Full canary of the tiny demo model (steps 10, 50, 100; pauses 0; verification)\n")
    took = release["bench_seconds"]
    print(f"Ended {release['state']} in {took:.1f} s (target <= 60 s): {release['reason']}\n")
    print("| phase | seconds |\n| --- | ---: |")
    for name, seconds in phases(events):
        print(f"| {name} | {seconds:.2f} |")
    analyses = [e["message"] for e in events if e["kind"] == "analysis"]
    for message in analyses:
        print(f"\nanalysis: {message}")


def print_checks(runs: list[dict[str, Any]]) -> None:
    durations: dict[str, list[int]] = defaultdict(list)
    statuses: dict[str, set[str]] = defaultdict(set)
    order: list[str] = []
    for run in runs:
        for check in run["checks"]:
            if check["name"] not in order:
                order.append(check["name"])
            durations[check["name"]].append(check["duration_ms"])
            statuses[check["name"]].add(check["status"])
    print(f"\n## 3. Verification suite, per check ({len(runs)} runs of the tiny model)\n")
    print("| check | runs | median ms | max ms | statuses |\n| --- | ---: | ---: | ---: | --- |")
    for name in order:
        values = durations[name]
        print(
            f"| {name} | {len(values)} | {statistics.median(values):.0f} | {max(values)} |"
            f" {', '.join(sorted(statuses[name]))} |"
        )
    totals = [
        (at(run["finished_at"]) - at(run["started_at"]))
        for run in runs
        if run["started_at"] and run["finished_at"]
    ]
    if totals:
        print(f"\nA whole run: median {statistics.median(totals):.2f} s, max {max(totals):.2f} s")


def failures(answers: list[Answer]) -> str:
    """How many answers were not 200, by status and error code."""
    bad = Counter(f"{a.status} {a.error}" for a in answers if a.status != 200)
    listed = ", ".join(f"{count} x {what}" for what, count in bad.most_common())
    return f"{sum(bad.values())} of {len(answers)}" + (f" ({listed})" if listed else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="blue-green rollbacks to time")
    # Two: a gunicorn process lets 3 of its threads wait on one device (MOC_SERVING_WAITING_PER_QUEUE)
    # and refuses the next with 503 queue_busy; more threads measure that bound, not the rollout.
    parser.add_argument("--threads", type=int, default=2, help="threads of steady load")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moc-bench-") as folder:
        began = time.time()
        scratch = Scratch(Path(folder))
        print(f"scratch MOC up in {time.time() - began:.1f} s ({folder})")
        try:
            bg = scratch.deployment("bench-bluegreen", strategy="blue_green", abort_grace_s=1)
            first = scratch.settled(scratch.release(bg, "demo-gpt2", "recreate"))
            if first["state"] != "promoted":
                raise RuntimeError(f"the first release did not promote: {first['reason']}")
            with Load(scratch.base, scratch.setup["key"], bg, threads=opts.threads) as load:
                rounds = [rollback_round(scratch, load, bg) for _ in range(opts.rounds)]
            print_rollback(rounds)
            print(f"All answers to {bg} during the rounds: {failures(load.answers)} not 200.")

            cn = scratch.deployment("bench-canary", strategy="canary", step_pause_s=0, abort_grace_s=1)
            first = scratch.settled(scratch.release(cn, "demo-gpt2", "recreate"))
            if first["state"] != "promoted":
                raise RuntimeError(f"the first release did not promote: {first['reason']}")
            golden_set(scratch, cn)
            with Load(scratch.base, scratch.setup["key"], cn, threads=opts.threads) as load:
                release, events = canary(scratch, load, cn)
            print_canary(release, events)
            print(f"\nAnswers to {cn} during the canary: {failures(load.answers)} not 200.")

            print_checks(scratch.runs())
        finally:
            scratch.stop()


if __name__ == "__main__":
    main()
