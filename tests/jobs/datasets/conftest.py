from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def dataset_root(tmp_path: Path, settings: Any) -> Path:
    """The one dataset root of the test (MOC_DATASET_ROOTS), empty at the start."""
    root = (tmp_path / "datasets").resolve()
    root.mkdir()
    settings.MOC_DATASET_ROOTS = [str(root)]
    return root


@pytest.fixture
def write_jsonl(dataset_root: Path) -> Callable[..., Path]:
    """Write rows (dicts, or raw strings written as they are) as a JSONL file under the root."""

    def write(name: str, rows: list[Any]) -> Path:
        path = dataset_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    return write
