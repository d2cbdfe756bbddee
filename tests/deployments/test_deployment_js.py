"""static/js/deployment.js run by Node against stand-ins for the page, its socket and Plotly: what
each chart is drawn with for a given payload of figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

NODE = shutil.which("node")
SCRIPT = Path(settings.BASE_DIR) / "static" / "js" / "deployment.js"

# Stand-ins: the page's data, its four charts, a LiveSocket that hands the payload over at once,
# and a Plotly that keeps each chart's annotations.
HARNESS = """
const fs = require("fs");
const payload = JSON.parse(process.argv[2]);
const charts = ["rps", "p50", "p99", "error_rate"].map((m) => ({ dataset: { metric: m } }));
const drawn = {};
global.document = {
  getElementById: (id) => (id === "deployment-data"
    ? { textContent: JSON.stringify({ ws: "/ws/deployments/chat/", url: "/deployments/chat/" }) } : null),
  querySelectorAll: (sel) => (sel.includes("data-metric") ? charts : []),
};
global.window = {
  Plotly: { react: (el, traces, layout) => { drawn[el.dataset.metric] = layout.annotations.length; } },
  MOC: { LiveSocket: function (url, handlers) { handlers["deployment.figures"](payload); } },
};
eval(fs.readFileSync(process.argv[1], "utf8"));
console.log(JSON.stringify(drawn));
"""


def annotations(payload: dict[str, Any]) -> dict[str, int]:
    """How many annotations ("no requests yet") each chart is drawn with."""
    result = subprocess.run(
        [NODE or "node", "-e", HARNESS, str(SCRIPT), json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_healthy_deployment_with_no_errors_draws_its_error_rate_not_no_requests_yet() -> None:
    now = int(time.time()) // 5 * 5
    # [start, rps, p50, p99, error rate, requests]: answered, none failed.
    points = [[now - 10, 2.0, 10.0, 20.0, 0.0, 10], [now - 5, 2.0, 11.0, 21.0, 0.0, 10]]

    drawn = annotations({"bucket_s": 5, "releases": [{"id": 1, "label": "chat v1 (#1)", "points": points}]})

    assert drawn == {"rps": 0, "p50": 0, "p99": 0, "error_rate": 0}


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_a_deployment_nobody_asked_says_no_requests_yet_on_every_chart() -> None:
    now = int(time.time()) // 5 * 5
    points = [[now - 10, 0.0, None, None, None, 0], [now - 5, 0.0, None, None, None, 0]]

    drawn = annotations({"bucket_s": 5, "releases": [{"id": 1, "label": "chat v1 (#1)", "points": points}]})

    assert drawn == {"rps": 1, "p50": 1, "p99": 1, "error_rate": 1}
