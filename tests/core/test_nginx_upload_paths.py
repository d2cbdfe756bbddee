"""Both nginx configurations give the upload paths (MOC_UPLOAD_PATHS) their own body limit and stream
their bodies to gunicorn, with a short body timeout and at most 2 upload connections per address;
every other path keeps MOC_MAX_REQUEST_BYTES."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

from tests.procs import ROOT, nginx_binary

NGINX = ROOT / "deploy" / "nginx"


def locations(text: str) -> dict[str, str]:
    """Each exact-path location of an nginx configuration, with its body."""
    return dict(re.findall(r"location = (\S+) \{\n(.*?)\n\s*\}", text, re.DOTALL))


def directives(body: str) -> list[str]:
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def limit_map(text: str) -> dict[str, str]:
    body = re.search(r"map \$uri \$moc_body_limit \{\n(.*?)\n\s*\}", text, re.DOTALL)
    assert body is not None
    return dict(line.strip().rstrip(";").split() for line in body[1].splitlines() if line.strip())


# What an upload location adds to the generic proxying, after its body limit: a streamed body
# holds a gunicorn thread, so a client that trickles one or opens many is cut off here.
STREAMING = [
    "proxy_request_buffering off;",
    "client_body_timeout 10s;",
    "limit_conn moc_uploads 2;",
    "limit_conn_status 429;",
]
CONN_ZONE = "limit_conn_zone $binary_remote_addr zone=moc_uploads:10m;"


def generic_directives(text: str) -> list[str]:
    """The generic location's directives, with nothing about the body limit."""
    body = re.search(r"location / \{\n(.*?)\n\s*\}", text, re.DOTALL)
    assert body is not None
    return directives(body[1])


def render(tmp_path: Path) -> str:
    call_command("nginx_conf", str(tmp_path), listen="127.0.0.1:1", web="127.0.0.1:2", ws="127.0.0.1:3")
    return (tmp_path / "nginx.conf").read_text()


def test_the_run_commands_nginx_has_a_streaming_location_per_upload_path_with_its_limit(
    tmp_path: Path, settings: Any
) -> None:
    settings.MOC_MAX_REQUEST_BYTES = 1000
    settings.MOC_UPLOAD_PATHS = {"/api/v1/datasets/": 5000, "/jobs/datasets/upload/": 7000}

    text = render(tmp_path)

    found = locations(text)
    assert sorted(found) == ["/api/v1/datasets/", "/jobs/datasets/upload/"]
    generic = generic_directives(text)
    for path, limit in settings.MOC_UPLOAD_PATHS.items():
        lines = directives(found[path])
        assert lines[:5] == [f"client_max_body_size {limit};", *STREAMING]
        # The same proxying as every other page and API call (headers included).
        assert [line for line in lines[5:] if "#" not in line] == [
            line for line in generic if "#" not in line
        ]
    assert CONN_ZONE in directives(text)
    assert limit_map(text) == {
        "default": "1000",
        "/api/v1/datasets/": "5000",
        "/jobs/datasets/upload/": "7000",
    }
    assert "client_max_body_size 1000;" in text
    assert not re.search(r"^[^#]*@[A-Z_]+@", text, re.MULTILINE)  # every placeholder filled


def test_the_run_commands_nginx_takes_its_rendered_configuration(tmp_path: Path) -> None:
    text = render(tmp_path)

    checked = subprocess.run(
        [
            nginx_binary(),
            "-t",
            "-q",
            "-e",
            "stderr",
            "-p",
            f"{tmp_path}/",
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
    )

    assert checked.returncode == 0, checked.stderr
    assert sorted(locations(text)) == sorted(settings.MOC_UPLOAD_PATHS)


def test_with_no_upload_paths_there_is_no_upload_location(tmp_path: Path, settings: Any) -> None:
    settings.MOC_UPLOAD_PATHS = {}

    text = render(tmp_path)

    assert locations(text) == {}
    assert limit_map(text) == {"default": str(settings.MOC_MAX_REQUEST_BYTES)}


def compose_proxy() -> dict[str, Any]:
    proxy: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["proxy"]
    return proxy


def test_compose_nginx_streams_exactly_the_upload_paths_with_the_summed_limit() -> None:
    text = (NGINX / "compose.conf.template").read_text()

    found = locations(text)

    assert sorted(found) == sorted(settings.MOC_UPLOAD_PATHS)
    for body in found.values():
        lines = directives(body)
        assert lines[:5] == ["client_max_body_size ${MOC_UPLOAD_MAX_BODY_BYTES};", *STREAMING]
        assert lines[5:] == generic_directives(text)
    assert CONN_ZONE in directives(text)
    assert limit_map(text) == {
        "default": "${MOC_MAX_REQUEST_BYTES}",
        **dict.fromkeys(settings.MOC_UPLOAD_PATHS, "${MOC_UPLOAD_MAX_BODY_BYTES}"),
    }


@pytest.mark.parametrize("upload_max", [52428800, 1234])
def test_compose_proxys_upload_limit_is_moc_dataset_limit_plus_the_envelope(upload_max: int) -> None:
    # The nginx image sources executable *.envsh files in /docker-entrypoint.d/ before filling in
    # the templates; this one adds up what the template cannot.
    proxy = compose_proxy()
    script = NGINX / "upload-limit.envsh"
    assert (
        f"./{script.relative_to(ROOT)}:/docker-entrypoint.d/15-moc-upload-limit.envsh:ro" in proxy["volumes"]
    )
    assert os.access(script, os.X_OK)
    assert proxy["environment"]["MOC_DATASET_UPLOAD_MAX_BYTES"] == (
        f"${{MOC_DATASET_UPLOAD_MAX_BYTES:-{settings.MOC_DATASET_UPLOAD_MAX_BYTES}}}"
    )

    sourced = subprocess.run(
        ["sh", "-c", f'. "{script}" && echo "$MOC_UPLOAD_MAX_BODY_BYTES"'],
        env={"PATH": os.environ["PATH"], "MOC_DATASET_UPLOAD_MAX_BYTES": str(upload_max)},
        capture_output=True,
        text=True,
        check=True,
    )

    assert int(sourced.stdout) == upload_max + settings.MOC_UPLOAD_ENVELOPE_BYTES


def test_web_and_the_proxy_get_the_same_dataset_limit() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]

    assert (
        services["web"]["environment"]["MOC_DATASET_UPLOAD_MAX_BYTES"]
        == services["proxy"]["environment"]["MOC_DATASET_UPLOAD_MAX_BYTES"]
    )
