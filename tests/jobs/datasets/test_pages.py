"""The datasets' pages: the list, one dataset with its preview and bad rows, the buttons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.domain.roles import Role
from apps.core.models import AuditEvent
from apps.jobs.datasets import validation
from apps.jobs.domain.states import DatasetState
from apps.jobs.models import Dataset
from tests.jobs.factories import DatasetFactory

pytestmark = pytest.mark.django_db
Client = Callable[[Role | None], APIClient]


def page(client: APIClient, url: str, **params: str) -> str:
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_list_shows_datasets_with_state_shape_and_rows(client_as: Client) -> None:
    DatasetFactory(name="support", state=DatasetState.VALID, shape="chat", rows=1234)

    html = page(client_as(Role.VIEWER), reverse("jobs:datasets"))

    assert "support" in html
    assert '<span class="badge ok">Valid</span>' in html
    assert "Chat messages" in html
    assert "1234" in html


def test_the_nav_links_to_datasets(client_as: Client) -> None:
    html = page(client_as(Role.VIEWER), reverse("jobs:list"))

    assert f'href="{reverse("jobs:datasets")}"' in html


def test_operators_see_upload_and_scan_viewers_do_not(client_as: Client) -> None:
    operator_html = page(client_as(Role.OPERATOR), reverse("jobs:datasets"))
    viewer_html = page(client_as(Role.VIEWER), reverse("jobs:datasets"))

    assert "Upload a dataset" in operator_html
    assert "Scan now" in operator_html
    assert "Upload a dataset" not in viewer_html
    assert "Scan now" not in viewer_html


def test_the_detail_page_marks_train_and_eval_rows_and_lists_bad_rows(
    client_as: Client, write_jsonl: Callable[..., Path]
) -> None:
    rows: list[object] = [{"prompt": f"question {n}", "completion": f"answer {n}"} for n in range(1, 21)]
    rows[2] = "{broken"
    path = write_jsonl("qa.jsonl", rows)
    dataset = DatasetFactory(root=str(path.parent), path=path.name, eval_share=0.3)
    validation.dataset_validate(dataset=dataset)

    html = page(client_as(Role.VIEWER), dataset.get_absolute_url())

    assert "answer 1" in html
    assert 'class="split-train' in html
    assert 'class="split-eval' in html
    assert "Bad rows" in html
    assert '<td class="num">3</td><td>not JSON' in html


def test_the_detail_page_previews_one_split(client_as: Client, write_jsonl: Callable[..., Path]) -> None:
    path = write_jsonl("t.jsonl", [{"text": f"row {n}"} for n in range(1, 41)])
    dataset = DatasetFactory(root=str(path.parent), path=path.name, eval_share=0.3)

    html = page(client_as(Role.VIEWER), dataset.get_absolute_url(), split="eval")

    assert 'class="split-eval' in html
    assert 'class="split-train' not in html


def test_operator_uploads_through_the_page(client_as: Client, dataset_root: Path) -> None:
    client = client_as(Role.OPERATOR)

    response = client.post(
        reverse("jobs:dataset_upload"),
        {"file": SimpleUploadedFile("notes.txt", b"one\ntwo\n"), "eval_share": "0.1", "split_seed": "0"},
        format="multipart",
    )

    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert response["Location"] == dataset.get_absolute_url()
    assert (dataset.name, dataset.state, dataset.rows) == ("notes", DatasetState.VALID, 2)


def test_a_refused_upload_says_why(client_as: Client, dataset_root: Path) -> None:
    client = client_as(Role.OPERATOR)

    response = client.post(
        reverse("jobs:dataset_upload"),
        {"file": SimpleUploadedFile("x.csv", b"a,b\n"), "eval_share": "0.1", "split_seed": "0"},
        format="multipart",
        follow=True,
    )

    assert ".jsonl or .txt" in response.content.decode()
    assert not Dataset.objects.exists()


def test_viewer_may_not_press_scan_or_validate(client_as: Client) -> None:
    client = client_as(Role.VIEWER)
    dataset = DatasetFactory()

    assert client.post(reverse("jobs:datasets_scan")).status_code == 403
    assert client.post(reverse("jobs:dataset_validate", args=[dataset.pk])).status_code == 403


def test_scan_now_registers_and_reports(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "c.txt").write_text("x\n")

    response = client_as(Role.OPERATOR).post(reverse("jobs:datasets_scan"), follow=True)

    assert "1 new" in response.content.decode()
    assert Dataset.objects.filter(name="c").exists()
    # Audited as the API's scan is.
    scan = AuditEvent.objects.get(action="scan")
    assert scan.changes["datasets"][1]["new"] == 1


def test_a_preview_that_stops_short_says_so_on_the_page(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "big.txt").write_text("".join(f"row {n}\n" for n in range(1, 1001)))
    dataset = DatasetFactory(root=str(dataset_root), path="big.txt", format="text", eval_share=0.0)

    html = page(client_as(Role.VIEWER), dataset.get_absolute_url(), split="eval")

    assert "Preview: None in the first 200 rows of the file: a preview reads no further." in html


def test_validate_again_shows_the_verdict(client_as: Client, dataset_root: Path) -> None:
    (dataset_root / "c.txt").write_text("x\ny\n")
    dataset = DatasetFactory(root=str(dataset_root), path="c.txt", format="text")

    response = client_as(Role.OPERATOR).post(reverse("jobs:dataset_validate", args=[dataset.pk]), follow=True)

    assert "valid, 2 rows" in response.content.decode()
