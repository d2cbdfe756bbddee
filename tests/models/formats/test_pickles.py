"""Pickle-based files: scanned without ever being unpickled; hostile ones are refused."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from apps.models.domain.headers import Check
from apps.models.formats import pickles, read_header
from tests.models.formats import corpus

Writer = Callable[[Path, Path], Path]

HOSTILE: dict[str, tuple[Writer, str]] = {
    "plain pickle": (lambda d, m: corpus.write(d, "evil.pkl", corpus.shell_pickle(m)), "posix.system"),
    "legacy torch.save": (
        lambda d, m: corpus.legacy_torch_file(d, "evil.pt", corpus.shell_pickle(m)),
        "posix.system",
    ),
    "zip torch.save": (
        lambda d, m: corpus.torch_zip_file(d, "pytorch_model.bin", corpus.shell_pickle(m, protocol=4)),
        "posix.system",
    ),
    "builtins eval": (lambda d, m: corpus.write(d, "evil.ckpt", corpus.eval_pickle(m)), "builtins.eval"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path: Path, case: str) -> None:
    writer, imported = HOSTILE[case]
    marker = tmp_path / "MARKER"
    path = writer(tmp_path, marker)

    header = read_header(path, roots=[tmp_path])

    assert header.failed
    check = header.checks[0]
    assert check.check == "pickle_scan"
    assert imported in check.detail
    assert "would run code" in check.detail
    assert not marker.exists()


def test_a_clean_pickle_is_only_a_warning(tmp_path: Path) -> None:
    path = corpus.write(tmp_path, "state.pkl", corpus.clean_pickle())

    header = read_header(path, roots=[tmp_path])

    assert header.checks == (Check("pickle_scan", "warn", pickles.CLEAN),)
    assert header.metadata["pickle"] is True


@pytest.mark.parametrize(
    ("writer", "container"),
    [(corpus.legacy_torch_file, "legacy"), (corpus.torch_zip_file, "zip")],
)
def test_torch_save_layouts_are_scanned_and_their_globals_listed(
    tmp_path: Path, writer: Callable[[Path, str, bytes], Path], container: str
) -> None:
    path = writer(tmp_path, "pytorch_model.bin", corpus.torch_like_pickle())

    header = read_header(path, roots=[tmp_path])

    assert header.checks == (Check("pickle_scan", "warn", pickles.CLEAN),)
    assert header.metadata == {
        "pickle": True,
        "container": container,
        "globals": ["collections.OrderedDict", "torch.FloatStorage", "torch._utils._rebuild_tensor_v2"],
    }


def test_a_zip_files_weights_are_its_tensor_storages(tmp_path: Path) -> None:
    path = corpus.torch_zip_file(tmp_path, "pytorch_model.bin", corpus.torch_like_pickle(), storage_bytes=96)

    assert pickles.read(path).weights_bytes == 96


def test_real_torch_save_files_are_scanned_without_loading(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "MARKER"
    torch.save({"w": torch.zeros(4, 4, dtype=torch.bfloat16), "b": torch.ones(4)}, tmp_path / "clean.bin")
    torch.save({"w": corpus._RunsShell(marker)}, tmp_path / "evil.bin")

    clean = read_header(tmp_path / "clean.bin", roots=[tmp_path])
    evil = read_header(tmp_path / "evil.bin", roots=[tmp_path])

    assert clean.checks[0].status == "warn"
    assert clean.weights_bytes == 4 * 4 * 2 + 4 * 4
    assert evil.checks[0].status == "fail"
    assert "posix.system" in evil.checks[0].detail
    assert not marker.exists()


def test_an_import_outside_the_known_safe_list_is_named_in_the_warning(tmp_path: Path) -> None:
    payload = b"\x80\x02cmy_package.layers\nCustomLayer\n)R."
    path = corpus.write(tmp_path, "custom.pt", payload)

    check = read_header(path, roots=[tmp_path]).checks[0]

    assert check.status == "warn"
    assert "my_package.layers.CustomLayer" in check.detail


def test_a_zip_bomb_of_opcodes_is_refused_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pickles, "MAX_SCAN_READS", 20_000)
    path = corpus.zip_bomb_pickle(tmp_path, megabytes=2)
    tracemalloc.start()
    try:
        header = read_header(path, roots=[tmp_path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert header.checks == (Check("pickle_scan", "fail", pickles.TOO_LARGE),)
    assert peak < 8 * 1024 * 1024


def test_a_large_blob_hiding_a_dangerous_import_is_not_called_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # picklescan treats an unreadable stream as "not a pickle"; the budget must not turn that into clean.
    monkeypatch.setattr(pickles, "MAX_SCAN_BYTES", 4096)
    blob = b"\x80\x04B" + (8192).to_bytes(4, "little") + bytes(8192) + b"0"
    path = corpus.write(tmp_path, "blob.pkl", blob + b"cposix\nsystem\n.")

    header = read_header(path, roots=[tmp_path])

    assert header.checks == (Check("pickle_scan", "fail", pickles.TOO_LARGE),)


def test_a_broken_zip_is_refused_as_unscannable(tmp_path: Path) -> None:
    path = corpus.write(tmp_path, "model.pt", b"PK\x03\x04" + bytes(100))

    check = read_header(path, roots=[tmp_path]).checks[0]

    assert (check.check, check.status) == ("pickle_scan", "fail")
    assert "could not be scanned (BadZipFile)" in check.detail
