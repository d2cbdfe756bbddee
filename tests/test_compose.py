"""compose.yaml is the production shape; no engine runs here, so validate it with docker-compose."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml
from django.conf import settings

from tests.procs import ROOT


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_is_valid_for_docker_compose() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed (scripts/test.sh installs it as root)")
        pytest.skip("docker-compose is not installed")

    proc = subprocess.run(
        [binary, "-f", "compose.yaml", "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert proc.returncode == 0, proc.stderr


def test_compose_runs_the_production_shape() -> None:
    services = _compose()["services"]

    for name in ("postgres", "redis", "proxy", "web", "ws", "cpu-worker", "beat", "prometheus"):
        assert name in services, name
    gpu_workers = [s for name, s in services.items() if name.startswith("gpu-worker")]
    assert gpu_workers
    for worker in gpu_workers:
        devices = worker["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia"


def test_exactly_one_beat_runs_in_compose() -> None:
    services = _compose()["services"]

    beats = [name for name, s in services.items() if "beat" in str(s.get("command", ""))]

    assert beats == ["beat"]


def test_the_proxy_refuses_bodies_at_the_limit_web_has() -> None:
    # One variable for both, with the default MOC has, so raising it in .env raises both.
    services = _compose()["services"]
    limit = f"${{MOC_MAX_REQUEST_BYTES:-{settings.MOC_MAX_REQUEST_BYTES}}}"

    assert services["web"]["environment"]["MOC_MAX_REQUEST_BYTES"] == limit
    assert services["proxy"]["environment"]["MOC_MAX_REQUEST_BYTES"] == limit


def test_the_proxy_template_is_filled_only_with_what_the_proxy_is_given() -> None:
    # The nginx image replaces the ${NAME}s that NGINX_ENVSUBST_FILTER matches; nginx's own
    # $variables must not match it, and each that does must be in the proxy's environment.
    proxy = _compose()["services"]["proxy"]
    template = ROOT / "deploy" / "nginx" / "compose.conf.template"
    text = template.read_text()
    matched = re.compile(proxy["environment"]["NGINX_ENVSUBST_FILTER"])

    filled = {name for name in re.findall(r"\$\{?(\w+)", text) if matched.search(name)}

    assert filled == {"MOC_MAX_REQUEST_BYTES"}
    assert filled <= set(proxy["environment"])
    assert "$MOC_" not in text  # the braced form only, as the integration test renders it
    assert f"./{template.relative_to(ROOT)}:/etc/nginx/templates/default.conf.template:ro" in proxy["volumes"]
