"""File and folder names with control characters, from discovery to the API: the raw name stays
exact, and a `*_display` field beside it shows every control character as a visible escape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.models.api.serializers import PrintableField
from tests.models.formats import corpus
from tests.models.scans import scan_now, validated, version_at

pytestmark = pytest.mark.django_db

Client = Callable[[Role | None], APIClient]
# A newline (C0, which JSON escapes), DEL and CSI (C1), which JSON leaves raw for a terminal to act on.
ODD = "odd\nname\x7f\x9b"
SHOWN = "odd\\nname\\x7f\\x9b"


def test_a_file_named_with_control_characters_is_shown_escaped_in_versions_and_files(
    root: Path, client_as: Client
) -> None:
    corpus.write_safetensors(root / "models", f"{ODD}.safetensors")
    scan_now()
    version = validated(version_at(root / "models" / f"{ODD}.safetensors"))
    client = client_as(Role.VIEWER)

    response = client.get(f"/api/v1/model-versions/{version.pk}/")
    body = response.json()
    [file] = body["files"]
    [listed] = client.get("/api/v1/model-files/", {"version": version.pk}).json()["results"]

    assert version.model.name == "odd-name"
    assert (body["path"], body["path_display"]) == (str(version.path), version.path.replace(ODD, SHOWN))
    assert (file["path"], file["path_display"]) == (f"{ODD}.safetensors", f"{SHOWN}.safetensors")
    assert (listed["path"], listed["path_display"]) == (f"{ODD}.safetensors", f"{SHOWN}.safetensors")
    report = [line for line in body["validation_report"] if line["file"]]
    assert report
    assert {(line["file"], line["file_display"]) for line in report} == {
        (f"{ODD}.safetensors", f"{SHOWN}.safetensors")
    }


def test_a_folder_named_with_a_newline_is_shown_escaped_in_the_scan_errors(
    root: Path, tmp_path: Path, client_as: Client
) -> None:
    corpus.overlapping_offsets(root / "bad\nfolder")
    link = corpus.escaping_symlink(root, tmp_path / "out\nside")
    scan = scan_now()

    errors = client_as(Role.VIEWER).get(f"/api/v1/scans/{scan.pk}/").json()["errors"]

    by_path = {error["path"]: error for error in errors}
    broken = by_path[str(root / "bad\nfolder" / "overlap.safetensors")]
    assert broken["path_display"] == str(root / "bad\\nfolder" / "overlap.safetensors")
    refused = by_path[str(link)]
    assert (
        refused["error"] == f"a symlink to {tmp_path}/out\\nside/secret.safetensors, outside the model roots"
    )


def test_a_name_that_is_not_utf8_is_refused_and_the_scan_goes_on(root: Path, client_as: Client) -> None:
    corpus.write_safetensors(root, "ok.safetensors")
    with open(bytes(root) + b"/bad\xff.safetensors", "wb") as handle:
        handle.write(corpus.safetensors_bytes(corpus.SMALL_TENSORS))

    scan = scan_now()

    assert (scan.state, scan.new, scan.failed) == ("succeeded", 1, 1)
    [error] = client_as(Role.VIEWER).get(f"/api/v1/scans/{scan.pk}/").json()["errors"]
    assert error == {
        "path": f"{root}/bad\\xff.safetensors",
        "path_display": f"{root}/bad\\xff.safetensors",
        "error": "the name is not UTF-8 text; rename it",
    }


def test_the_display_field_escapes_what_would_show_another_name() -> None:
    field = PrintableField()

    assert field.to_representation("model\u202efstensors.safe") == "model\\u202efstensors.safe"
    assert field.to_representation("a\x9bb") == "a\\x9bb"
