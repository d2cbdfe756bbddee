"""Sizes for people: binary units, labelled as such."""

from __future__ import annotations

import pytest

from apps.core.domain.units import format_bytes

MiB = 1024**2
GiB = 1024**3


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (512, "512 B"),
        (512 * MiB, "512.0 MiB"),
        (int(14.2 * GiB), "14.2 GiB"),
        (80 * GiB, "80.0 GiB"),
        (GiB - 1, "1.0 GiB"),
        (3 * 1024**4, "3.0 TiB"),
    ],
)
def test_format_bytes_writes_binary_units_with_one_decimal(n: int, text: str) -> None:
    assert format_bytes(n) == text
