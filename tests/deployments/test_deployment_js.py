"""static/js/deployment.js run by Node against stand-ins for the page, its socket and Plotly: what
each chart is drawn with for a given payload of figures (points as the consumer sends them,
series.Point.to_dict)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.deployments.domain.series import Point
from apps.deployments.views import CHARTS

NODE = shutil.which("node")
SCRIPT = Path(settings.BASE_DIR) / "static" / "js" / "deployment.js"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Stand-ins: the page's data, its charts (as views.CHARTS lists them), a LiveSocket that hands
# the payload over at once, and a Plotly that keeps what each chart was drawn with.
HARNESS = """
const fs = require("fs");
const payload = JSON.parse(process.argv[2]);
const charts = JSON.parse(process.argv[3]).map((m) => ({ dataset: { metric: m } }));
const drawn = {};
global.document = {
  getElementById: (id) => (id === "deployment-data"
    ? { textContent: JSON.stringify({ ws: "/ws/deployments/chat/", url: "/deployments/chat/" }) } : null),
  querySelectorAll: (sel) => (sel.includes("data-metric") ? charts : []),
};
global.window = {
  Plotly: { react: (el, traces, layout) => {
    drawn[el.dataset.metric] = {
      annotations: layout.annotations.length,
      traces: traces.map((t) => ({ name: t.name, y: t.y })),
    };
  } },
  MOC: { LiveSocket: function (url, handlers) { handlers["deployment.figures"](payload); } },
};
eval(fs.readFileSync(process.argv[1], "utf8"));
console.log(JSON.stringify(drawn));
"""


def drawn(*releases: tuple[int, list[Point]]) -> dict[str, Any]:
    """What each chart is drawn with: its annotations ("no requests yet") and its traces."""
    payload = {
        "bucket_s": 5,
        "releases": [
            {"id": rid, "label": f"chat v{rid} (#{rid})", "points": [p.to_dict() for p in points]}
            for rid, points in releases
        ],
    }
    result = subprocess.run(
        [NODE or "node", "-e", HARNESS, str(SCRIPT), json.dumps(payload), json.dumps([m for m, _ in CHARTS])],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def now() -> int:
    return int(time.time()) // 5 * 5


def test_a_healthy_deployment_with_no_errors_draws_its_error_rate_not_no_requests_yet() -> None:
    t = now()
    points = [
        Point(t=t - 10, seconds=5, requests=10, p50_ms=10, p99_ms=20),
        Point(t=t - 5, seconds=5, requests=10, p50_ms=11, p99_ms=21),
    ]

    charts = drawn((1, points))

    assert {m: c["annotations"] for m, c in charts.items()} == {m: 0 for m, _ in CHARTS}
    assert charts["error_rate"]["traces"][0]["y"] == [0, 0]


def test_a_deployment_nobody_asked_says_no_requests_yet_on_every_chart() -> None:
    t = now()
    points = [Point(t=t - 10, seconds=5), Point(t=t - 5, seconds=5)]

    charts = drawn((1, points))

    assert {m: c["annotations"] for m, c in charts.items()} == {m: 1 for m, _ in CHARTS}


def test_time_to_first_token_draws_p50_and_p99_of_each_release() -> None:
    t = now()
    stable = [Point(t=t - 5, seconds=5, requests=4, ttft_p50_ms=30, ttft_p99_ms=80)]
    canary = [Point(t=t - 5, seconds=5, requests=1, ttft_p50_ms=40, ttft_p99_ms=90)]

    traces = drawn((1, stable), (2, canary))["ttft"]["traces"]

    assert [(tr["name"], tr["y"]) for tr in traces] == [
        ("chat v1 (#1) p50", [30]),
        ("chat v1 (#1) p99", [80]),
        ("chat v2 (#2) p50", [40]),
        ("chat v2 (#2) p99", [90]),
    ]


def test_refusals_are_drawn_per_reason_per_second_across_releases() -> None:
    t = now()
    stable = [Point(t=t - 5, seconds=5, refused=6, refusals={"bulkhead_full": 5})]
    canary = [Point(t=t - 5, seconds=5, refused=5, refusals={"bulkhead_full": 5})]

    traces = drawn((1, stable), (2, canary))["refusals"]["traces"]

    # 10 bulkhead refusals in 5 s; the one without a reason is "other".
    assert [(tr["name"], tr["y"]) for tr in traces] == [("bulkhead_full", [2]), ("other", [0.2])]
