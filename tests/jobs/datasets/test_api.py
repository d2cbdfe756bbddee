"""The datasets API: reads for viewers, upload, edits, scan and validation for operators; refusals
name the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import AuditEvent, OutboxMessage
from apps.jobs.datasets import messages, services
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset
from tests.jobs.factories import DatasetFactory, JobFactory

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]
URL = "/api/v1/datasets/"


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def upload(client: APIClient, file_name: str, data: bytes, **fields: object) -> object:
    return client.post(URL, {"file": SimpleUploadedFile(file_name, data), **fields}, format="multipart")


def test_viewer_lists_datasets_filtered_by_state(client_as: Client) -> None:
    DatasetFactory(name="good", state=DatasetState.VALID)
    DatasetFactory(name="bad", state=DatasetState.INVALID)

    response = client_as(Role.VIEWER).get(URL, {"state": "valid"})

    assert response.status_code == 200
    assert [d["name"] for d in response.json()["results"]] == ["good"]


def test_anonymous_callers_are_refused(client_as: Client) -> None:
    assert client_as(None).get(URL).status_code in {401, 403}


def test_operator_uploads_a_small_file_and_gets_its_verdict(client_as: Client, dataset_root: Path) -> None:
    response = upload(
        client_as(Role.OPERATOR),
        "support.jsonl",
        jsonl({"prompt": "Q", "completion": "A"}, {"prompt": "Q2", "completion": "A2"}),
        description="support answers",
        eval_share=0.5,
        split_seed=9,
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["state"], body["rows"], body["source"]) == ("support", "valid", 2, "uploaded")
    assert (body["eval_share"], body["split_seed"], body["description"]) == (0.5, 9, "support answers")
    assert body["created_by"]["username"]
    assert (dataset_root / "support.jsonl").read_bytes().startswith(b'{"prompt": "Q"')
    assert AuditEvent.objects.filter(action="create", object_repr="support").exists()


def test_an_upload_with_bad_rows_is_kept_and_names_them(client_as: Client, dataset_root: Path) -> None:
    response = upload(client_as(Role.OPERATOR), "mixed.jsonl", jsonl({"text": "ok"}, [1], {"text": "ok"}))

    body = response.json()
    assert response.status_code == 201
    assert body["state"] == "invalid"
    assert body["errors"] == [{"row": 2, "error": "a row must be a JSON object, not list"}]


def test_viewer_may_not_upload(client_as: Client, dataset_root: Path) -> None:
    response = upload(client_as(Role.VIEWER), "a.jsonl", jsonl({"text": "x"}))

    assert response.status_code == 403
    assert list(dataset_root.iterdir()) == []


def test_an_upload_over_the_limit_is_refused_naming_the_file(
    client_as: Client, dataset_root: Path, settings: object
) -> None:
    settings.MOC_DATASET_UPLOAD_MAX_BYTES = 100  # type: ignore[attr-defined]

    response = upload(client_as(Role.OPERATOR), "big.txt", b"x" * 101)

    assert response.status_code == 400
    assert "limit" in response.json()["fields"]["file"][0]
    assert list(dataset_root.iterdir()) == []
    assert not Dataset.objects.exists()


def test_an_upload_of_another_kind_of_file_is_refused_naming_the_file(
    client_as: Client, dataset_root: Path
) -> None:
    response = upload(client_as(Role.OPERATOR), "weights.bin", b"x")

    assert response.status_code == 400
    assert ".jsonl or .txt" in response.json()["fields"]["file"][0]


def test_an_upload_name_is_sanitised_and_never_overwrites(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "evil.jsonl").write_bytes(b"theirs\n")
    client = client_as(Role.OPERATOR)

    response = upload(client, "../../evil.jsonl", jsonl({"text": "mine"}))

    assert response.status_code == 201
    assert response.json()["path"] == "evil-2.jsonl"
    assert (dataset_root / "evil.jsonl").read_bytes() == b"theirs\n"
    assert sorted(p.name for p in dataset_root.iterdir()) == ["evil-2.jsonl", "evil.jsonl"]


def test_an_upload_under_a_taken_name_is_refused_naming_the_name(
    client_as: Client, dataset_root: Path
) -> None:
    DatasetFactory(name="taken")

    response = upload(client_as(Role.OPERATOR), "a.txt", b"x\n", name="taken")

    assert response.status_code == 400
    assert "exists already" in response.json()["fields"]["name"][0]
    assert list(dataset_root.iterdir()) == []


@pytest.mark.parametrize(("field", "value"), [("eval_share", 0.95), ("split_seed", -1), ("name", "a/b")])
def test_an_upload_with_a_bad_field_is_refused_naming_it(
    client_as: Client, dataset_root: Path, field: str, value: object
) -> None:
    response = upload(client_as(Role.OPERATOR), "a.txt", b"x\n", **{field: value})

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_a_big_upload_is_validated_by_a_worker(client_as: Client, dataset_root: Path) -> None:
    data = b"a line of text\n" * (services.INLINE_VALIDATE_MAX_BYTES // 15 + 1)

    response = upload(client_as(Role.OPERATOR), "big.txt", data)

    assert response.status_code == 201
    assert response.json()["state"] == "pending"
    queued = OutboxMessage.objects.get(task_name=messages.DATASET_VALIDATE)
    assert queued.args == [response.json()["id"]]


def test_operator_changes_the_split(client_as: Client) -> None:
    dataset = DatasetFactory(state=DatasetState.VALID)

    response = client_as(Role.OPERATOR).patch(f"{URL}{dataset.pk}/", {"eval_share": 0.2, "split_seed": 5})

    assert response.status_code == 200
    assert (response.json()["eval_share"], response.json()["split_seed"], response.json()["state"]) == (
        0.2,
        5,
        "valid",
    )
    assert AuditEvent.objects.filter(action="update", object_repr=dataset.name).exists()


@pytest.mark.parametrize(("field", "value"), [("eval_share", 0.5), ("split_seed", 7)])
def test_the_split_of_a_dataset_a_job_used_cannot_change(
    client_as: Client, field: str, value: object
) -> None:
    dataset = DatasetFactory(state=DatasetState.VALID, eval_share=0.1, split_seed=0)
    JobFactory(dataset=dataset)

    response = client_as(Role.OPERATOR).patch(f"{URL}{dataset.pk}/", {field: value})

    assert response.status_code == 409
    assert response.json()["error"] == "split_in_use"
    assert response.json()["detail"].startswith(f"{field}: ")
    dataset.refresh_from_db()
    assert (dataset.eval_share, dataset.split_seed) == (0.1, 0)


def test_a_used_datasets_description_and_unchanged_split_may_still_be_sent(client_as: Client) -> None:
    dataset = DatasetFactory(state=DatasetState.VALID, eval_share=0.1, split_seed=3)
    JobFactory(dataset=dataset)

    response = client_as(Role.OPERATOR).patch(
        f"{URL}{dataset.pk}/", {"description": "new words", "eval_share": 0.1, "split_seed": 3}
    )

    assert response.status_code == 200
    assert response.json()["description"] == "new words"


def test_a_patch_out_of_range_is_refused_naming_the_field(client_as: Client) -> None:
    dataset = DatasetFactory()

    response = client_as(Role.OPERATOR).patch(f"{URL}{dataset.pk}/", {"eval_share": 2})

    assert response.status_code == 400
    assert "eval_share" in response.json()["fields"]


def test_viewer_may_not_patch(client_as: Client) -> None:
    dataset = DatasetFactory()

    assert client_as(Role.VIEWER).patch(f"{URL}{dataset.pk}/", {"description": "x"}).status_code == 403


def test_scan_registers_the_roots_files(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "corpus.txt").write_text("x\n")

    response = client_as(Role.OPERATOR).post(f"{URL}scan/")

    assert response.status_code == 200
    assert response.json()["new"] == 1
    assert Dataset.objects.get().name == "corpus"
    assert AuditEvent.objects.filter(action="scan").exists()


def test_viewer_may_not_scan(client_as: Client, dataset_root: Path) -> None:
    assert client_as(Role.VIEWER).post(f"{URL}scan/").status_code == 403


def test_validate_answers_with_the_verdict_of_a_small_file(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "a.txt").write_text("one\ntwo\n")
    dataset = DatasetFactory(root=str(dataset_root), path="a.txt", format="text", size_bytes=8)

    response = client_as(Role.OPERATOR).post(f"{URL}{dataset.pk}/validate/")

    assert response.status_code == 200
    assert (response.json()["state"], response.json()["rows"]) == ("valid", 2)
    assert AuditEvent.objects.filter(action="validation").exists()


def test_preview_shows_rows_with_their_split(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "a.jsonl").write_bytes(
        jsonl(*({"prompt": "p", "completion": f"c{n}"} for n in range(30)))
    )
    dataset = DatasetFactory(root=str(dataset_root), path="a.jsonl", eval_share=0.3)

    response = client_as(Role.VIEWER).get(f"{URL}{dataset.pk}/preview/", {"rows": 5})

    body = response.json()
    assert response.status_code == 200
    assert [r["row"] for r in body["rows"]] == [1, 2, 3, 4, 5]
    assert body["rows"][0]["completion"] == "c0"
    assert {r["split"] for r in body["rows"]} <= {"train", "eval"}


@pytest.mark.parametrize(("param", "value"), [("rows", "0"), ("rows", "lots"), ("split", "test")])
def test_preview_refuses_a_bad_parameter_naming_it(client_as: Client, param: str, value: str) -> None:
    dataset = DatasetFactory()

    response = client_as(Role.VIEWER).get(f"{URL}{dataset.pk}/preview/", {param: value})

    assert response.status_code == 400
    assert param in response.json()["fields"]


def test_datasets_are_not_deleted(client_as: Client) -> None:
    dataset = DatasetFactory()

    assert client_as(Role.ADMIN).delete(f"{URL}{dataset.pk}/").status_code == 405


def test_an_upload_must_be_multipart(client_as: Client, dataset_root: Path) -> None:
    response = client_as(Role.OPERATOR).post(URL, {"name": "x"}, format="json")

    assert response.status_code == 415
    assert not Dataset.objects.exists()


def test_the_schema_documents_the_upload_as_multipart_with_its_413_and_retrys_403(
    client_as: Client,
) -> None:
    schema = json.loads(client_as(Role.VIEWER).get("/api/schema/", {"format": "json"}).content)

    upload_op = schema["paths"]["/api/v1/datasets/"]["post"]
    assert list(upload_op["requestBody"]["content"]) == ["multipart/form-data"]
    assert "413" in upload_op["responses"]
    assert "403" in schema["paths"]["/api/v1/jobs/{id}/retry/"]["post"]["responses"]
    shape = schema["components"]["schemas"]["Dataset"]["properties"]["shape"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in shape["oneOf"]} == {"ShapeEnum", "BlankEnum"}
