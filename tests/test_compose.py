"""compose.yaml is the production shape; no engine runs here, so validate it with docker-compose."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from typing import Any

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
    # $variables must not match it, and each that does must be in the proxy's environment, or be
    # the upload paths' limit, which deploy/nginx/upload-limit.envsh adds up from it at start.
    proxy = _compose()["services"]["proxy"]
    template = ROOT / "deploy" / "nginx" / "compose.conf.template"
    text = template.read_text()
    matched = re.compile(proxy["environment"]["NGINX_ENVSUBST_FILTER"])

    filled = {name for name in re.findall(r"\$\{?(\w+)", text) if matched.search(name)}

    assert filled == {"MOC_MAX_REQUEST_BYTES", "MOC_UPLOAD_MAX_BODY_BYTES"}
    assert filled - {"MOC_UPLOAD_MAX_BODY_BYTES"} <= set(proxy["environment"])
    assert "$MOC_" not in text  # the braced form only, as the integration test renders it
    assert f"./{template.relative_to(ROOT)}:/etc/nginx/templates/default.conf.template:ro" in proxy["volumes"]


def test_uvicorn_takes_the_address_nginx_saw_not_one_the_caller_wrote() -> None:
    """With FORWARDED_ALLOW_IPS "*" uvicorn's client was the leftmost X-Forwarded-For entry, which
    the caller writes: a fresh failed-key throttle bucket for each guessed key on /v1/."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    env = _compose()["services"]["ws"]["environment"]
    assert env["FORWARDED_ALLOW_IPS"] == env["MOC_TRUSTED_PROXIES"]
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    scope = {
        "type": "http",
        "scheme": "http",
        "client": ("172.18.0.5", 40000),  # nginx, on the compose network
        "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")],  # the caller's, then nginx's
    }
    asyncio.run(ProxyHeadersMiddleware(app, trusted_hosts=env["FORWARDED_ALLOW_IPS"])(scope, None, None))

    assert seen == [("203.0.113.9", 0)]
