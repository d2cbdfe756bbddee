"""Walking model roots: grouping files into versions, names, and what is refused (no database)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from apps.models import discovery
from apps.models.domain.formats import FileFormat, format_by_name
from tests.models.formats import corpus


def _by_path(walk: discovery.Walk) -> dict[str, discovery.Candidate]:
    return {candidate.path: candidate for candidate in walk.candidates}


def _names(candidate: discovery.Candidate) -> list[str]:
    return sorted(f.path for f in candidate.files)


def test_a_folder_with_config_and_shards_is_one_version_with_all_its_files(tmp_path: Path) -> None:
    names = corpus.write_hf_folder(tmp_path / "llama-tiny")

    walk = discovery.walk([tmp_path])

    [candidate] = walk.candidates
    assert (candidate.path, candidate.folder, candidate.name) == ("llama-tiny", True, "llama-tiny")
    assert _names(candidate) == names
    assert candidate.abspath == candidate.base == str(tmp_path / "llama-tiny")


def test_shards_of_one_set_make_a_folder_one_version_even_without_config(tmp_path: Path) -> None:
    for number in (1, 2, 3):
        corpus.write_safetensors(tmp_path / "mixtral", f"model-{number:05d}-of-00003.safetensors")

    [candidate] = discovery.walk([tmp_path]).candidates

    assert candidate.folder
    assert len(candidate.files) == 3


def test_an_adapter_folder_is_one_version(tmp_path: Path) -> None:
    corpus.write_adapter_folder(tmp_path / "lora")

    [candidate] = discovery.walk([tmp_path]).candidates

    assert _names(candidate) == ["adapter_config.json", "adapter_model.safetensors"]


def test_loose_weight_files_are_one_version_each_named_after_their_stem(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path, "bert-base.safetensors")
    corpus.write(tmp_path, "phi-2.Q4_K_M.gguf", b"GGUF")
    corpus.write(tmp_path, "resnet.pt", b"\x80\x02")
    corpus.write(tmp_path, "README.md", "not a model")

    found = _by_path(discovery.walk([tmp_path]))

    assert sorted(found) == ["bert-base.safetensors", "phi-2.Q4_K_M.gguf", "resnet.pt"]
    assert found["phi-2.Q4_K_M.gguf"].name == "phi-2.Q4_K_M"
    assert [f.format for f in found["resnet.pt"].files] == [FileFormat.PYTORCH]
    assert not found["resnet.pt"].folder
    assert found["resnet.pt"].base == str(tmp_path)


def test_a_generic_file_name_takes_its_folders_name(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path / "qwen-0.5b", "model.safetensors")

    [candidate] = discovery.walk([tmp_path]).candidates

    assert (candidate.path, candidate.name) == ("qwen-0.5b/model.safetensors", "qwen-0.5b")


def test_an_onnx_file_takes_the_external_data_named_after_it(tmp_path: Path) -> None:
    corpus.write(tmp_path, "encoder.onnx", b"\x08\x07")
    corpus.write(tmp_path, "encoder.onnx.data", b"\0" * 64)

    [candidate] = discovery.walk([tmp_path]).candidates

    assert _names(candidate) == ["encoder.onnx", "encoder.onnx.data"]


def test_a_weight_file_beside_an_onnx_is_a_candidate_the_onnx_header_may_claim(tmp_path: Path) -> None:
    corpus.write(tmp_path, "encoder.onnx", b"\x08\x07")
    corpus.write(tmp_path / "sub", "weights.bin", b"\0" * 64)
    corpus.write(tmp_path / "other", "lone.onnx", b"\x08\x07")

    walk = discovery.walk([tmp_path])

    # Only the header says whether the .bin is the ONNX model's external data: the scan asks it.
    assert sorted(c.path for c in walk.candidates) == ["encoder.onnx", "other/lone.onnx", "sub/weights.bin"]
    assert [c.path for c in discovery.onnx_to_read(walk.candidates)] == ["encoder.onnx"]


def test_a_subfolder_of_a_version_folder_is_walked_on_its_own(tmp_path: Path) -> None:
    corpus.write_hf_folder(tmp_path / "gpt")
    corpus.write(tmp_path / "gpt" / "onnx", "model.onnx", b"\x08\x07")

    found = _by_path(discovery.walk([tmp_path]))

    assert sorted(found) == ["gpt", "gpt/onnx/model.onnx"]
    assert "onnx/model.onnx" not in _names(found["gpt"])


def test_model_names_are_made_valid(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path, "_my model (final)!.safetensors")

    [candidate] = discovery.walk([tmp_path]).candidates

    assert candidate.name == "my-model-final"


def test_a_hugging_face_cache_snapshot_is_named_after_its_repository(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--Qwen--Qwen2.5-0.5B" / "snapshots" / "a1b2c3"
    corpus.write_hf_folder(snapshot)

    [candidate] = discovery.walk([tmp_path]).candidates

    assert candidate.name == "Qwen2.5-0.5B"


def test_a_symlink_that_leaves_the_roots_is_refused_and_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    corpus.escaping_symlink(root, outside)
    (outside / "secrets").mkdir()
    (root / "linked-folder").symlink_to(outside / "secrets")

    walk = discovery.walk([root])

    assert walk.candidates == ()
    refused = {Path(r.path).name: r.reason for r in walk.refused}
    assert set(refused) == {"escape.safetensors", "linked-folder"}
    assert "outside the model roots" in refused["escape.safetensors"]


def test_a_symlink_inside_the_roots_counts_as_the_file_it_points_at(tmp_path: Path) -> None:
    blob = corpus.write_safetensors(tmp_path / "blobs", "abc123")
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "tiny.safetensors").symlink_to(blob)

    walk = discovery.walk([tmp_path])

    [candidate] = walk.candidates
    [found] = candidate.files
    assert (found.size, found.inode) == (blob.stat().st_size, blob.stat().st_ino)
    assert (walk.refused, walk.unreadable) == ((), ())


def test_a_second_root_makes_links_into_it_acceptable(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    target = corpus.write_safetensors(second, "shared.safetensors")
    (first / "linked.safetensors").symlink_to(target)

    walk = discovery.walk([first, second])

    assert sorted(c.path for c in walk.candidates) == ["linked.safetensors", "shared.safetensors"]
    assert walk.refused == ()


def test_a_dangling_symlink_and_a_fifo_are_unreadable_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "gone.safetensors").symlink_to(tmp_path / "missing")
    os.mkfifo(tmp_path / "pipe.safetensors")
    corpus.write_safetensors(tmp_path, "ok.safetensors")

    walk = discovery.walk([tmp_path])

    assert [c.path for c in walk.candidates] == ["ok.safetensors"]
    reasons = {Path(r.path).name: r.reason for r in walk.unreadable}
    assert set(reasons) == {"gone.safetensors", "pipe.safetensors"}
    assert reasons["pipe.safetensors"] == "not a regular file"


def test_a_name_that_is_not_utf8_is_refused_with_its_bytes_escaped(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path, "ok.safetensors")
    corpus.write_safetensors(tmp_path / "folder", "x.safetensors")
    os.rename(tmp_path / "folder", os.fsdecode(bytes(tmp_path) + b"/fold\xffer"))
    with open(bytes(tmp_path) + b"/bad\xff.safetensors", "wb") as handle:
        handle.write(corpus.safetensors_bytes(corpus.SMALL_TENSORS))

    walk = discovery.walk([tmp_path])

    assert [c.path for c in walk.candidates] == ["ok.safetensors"]
    assert sorted((r.path, r.reason) for r in walk.unreadable) == [
        (f"{tmp_path}/bad\\xff.safetensors", "the name is not UTF-8 text; rename it"),
        (f"{tmp_path}/fold\\xffer", "the name is not UTF-8 text; rename it"),
    ]


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path / ".cache", "x.safetensors")
    corpus.write_safetensors(tmp_path, ".partial.safetensors")

    assert discovery.walk([tmp_path]).candidates == ()


def test_a_missing_root_is_reported_and_the_others_are_walked(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path / "real", "a.safetensors")

    walk = discovery.walk([tmp_path / "real", tmp_path / "absent"])

    assert walk.missing_roots == (str(tmp_path / "absent"),)
    assert walk.roots == (str(tmp_path / "real"),)
    assert len(walk.candidates) == 1


def test_a_root_nested_in_another_is_walked_once(tmp_path: Path) -> None:
    corpus.write_safetensors(tmp_path / "inner", "a.safetensors")

    walk = discovery.walk([tmp_path, tmp_path / "inner"])

    assert walk.roots == (str(tmp_path),)
    assert [c.path for c in walk.candidates] == ["inner/a.safetensors"]


def test_a_file_is_seen_by_its_size_mtime_and_inode(tmp_path: Path) -> None:
    path = corpus.write_safetensors(tmp_path, "a.safetensors")
    info = path.stat()

    [found] = discovery.walk([tmp_path]).candidates[0].files

    assert found.fingerprint == f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.safetensors", FileFormat.SAFETENSORS),
        ("A.GGUF", FileFormat.GGUF),
        ("model.onnx", FileFormat.ONNX),
        ("pytorch_model.bin", FileFormat.PYTORCH),
        ("tokenizer.json", FileFormat.CONFIG),
        ("tokenizer.model", FileFormat.CONFIG),
        ("README.md", FileFormat.OTHER),
    ],
)
def test_format_by_name(name: str, expected: FileFormat) -> None:
    assert format_by_name(name) == expected


def test_ten_thousand_files_walk_in_well_under_a_second(tmp_path: Path) -> None:
    for folder in range(100):
        base = tmp_path / f"group-{folder}"
        base.mkdir()
        for number in range(100):
            (base / f"m{number}.safetensors").write_bytes(b"x")

    started = time.perf_counter()
    walk = discovery.walk([tmp_path])
    elapsed = time.perf_counter() - started

    assert walk.file_count == 10_000
    assert elapsed < 1.0


def test_a_scan_registers_no_version_for_pickles_that_are_not_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "sklearn").mkdir()
    (tmp_path / "sklearn" / "classifier.pkl").write_bytes(b"\x80\x04N.")
    (tmp_path / "notes.pickle").write_bytes(b"\x80\x04N.")

    assert discovery.walk([tmp_path]).candidates == ()
