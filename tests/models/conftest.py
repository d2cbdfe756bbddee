"""Fixtures the registry's scan tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def root(tmp_path: Path, settings: Any) -> Path:
    """An empty model root, the only one configured."""
    folder = tmp_path / "models"
    folder.mkdir()
    settings.MOC_MODEL_ROOTS = [str(folder)]
    return folder
