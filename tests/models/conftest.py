"""Fixtures the registry's scan tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apps.models import formats


@pytest.fixture
def root(tmp_path: Path, settings: Any) -> Path:
    """An empty model root, the only one configured."""
    folder = tmp_path / "models"
    folder.mkdir()
    settings.MOC_MODEL_ROOTS = [str(folder)]
    return folder


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths whose headers a scan read (the readers' entry point, wrapped, not replaced)."""
    seen: list[Path] = []
    real = formats.read_header

    def counting(path: Path, **kwargs: Any) -> Any:
        seen.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(formats, "read_header", counting)
    return seen
