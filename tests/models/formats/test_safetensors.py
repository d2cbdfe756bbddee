"""The safetensors reader: valid files summarised, broken and hostile ones refused with reasons."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.models.domain.headers import FileHeader, TensorInfo
from apps.models.formats import read_header, safetensors
from apps.models.formats.base import FormatError
from tests.models.formats import corpus


def _failures(header: FileHeader) -> dict[str, str]:
    return {check.check: check.detail for check in header.checks if check.status == "fail"}


def test_a_valid_file_is_summarised(tmp_path: Path) -> None:
    path = corpus.write_safetensors(tmp_path, metadata={"format": "pt"})

    header = safetensors.read(path)

    assert not header.failed
    assert header.format == "safetensors"
    assert header.tensor_count == 3
    assert header.params_count == corpus.SMALL_PARAMS
    assert header.weights_bytes == corpus.SMALL_BYTES
    assert header.dtypes == {"F16": 1, "BF16": 1, "F32": 1}
    assert header.metadata["metadata"] == {"format": "pt"}
    assert TensorInfo("model.norm.weight", "BF16", (4,), 8) in header.tensors


def test_a_valid_file_passes_every_named_check(tmp_path: Path) -> None:
    header = safetensors.read(corpus.write_safetensors(tmp_path))

    assert {c.check for c in header.checks} >= {
        "header_size",
        "header_json",
        "tensor_names_unique",
        "dtype_known",
        "tensor_size",
        "offsets_contiguous",
        "data_length",
    }
    assert {c.status for c in header.checks} == {"pass"}


def test_a_file_with_no_tensors_is_valid(tmp_path: Path) -> None:
    header = safetensors.read(
        corpus.write(tmp_path, "empty.safetensors", corpus.raw_safetensors("{}", data_bytes=0))
    )

    assert not header.failed
    assert header.params_count == 0


def test_tensors_may_be_listed_in_any_order_in_the_header(tmp_path: Path) -> None:
    header_json = json.dumps(
        {
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        }
    )
    path = corpus.write(tmp_path, "order.safetensors", corpus.raw_safetensors(header_json, data_bytes=16))

    assert not safetensors.read(path).failed


@pytest.mark.parametrize(("dtype", "bits"), sorted(safetensors.DTYPE_BITS.items()))
def test_every_dtype_of_the_format_is_known(tmp_path: Path, dtype: str, bits: int) -> None:
    size = 4 * bits // 8
    header_json = json.dumps({"t": {"dtype": dtype, "shape": [4], "data_offsets": [0, size]}})
    path = corpus.write(tmp_path, "dtype.safetensors", corpus.raw_safetensors(header_json, data_bytes=size))

    header = safetensors.read(path)

    assert not header.failed
    assert header.dtypes == {dtype: 1}


HOSTILE: dict[str, tuple[str, str]] = {
    "truncated": ("header_size", "fewer than the 8-byte header length"),
    "header_longer_than_file": ("header_size", "claims 4,096 bytes but only 8 follow"),
    "header_claims_99_mb": ("header_size", "claims 99,000,000 bytes"),
    "header_over_limit": ("header_size", "over the format's limit of 100,000,000"),
    "length_prefix_2_to_64": ("header_size", "over the format's limit"),
    "header_not_json": ("header_json", "not valid JSON"),
    "header_not_utf8": ("header_json", "not UTF-8"),
    "header_not_object": ("header_json", "not a JSON object"),
    "header_nan": ("header_json", "NaN is not JSON"),
    "header_deeply_nested": ("header_json", "not valid JSON"),
    "duplicate_tensor_names": ("tensor_names_unique", "named twice: 'w'"),
    "duplicate_keys_in_entry": ("header_json", "given twice inside an entry: 'dtype'"),
    "negative_offsets": ("tensor_entry", "data_offsets must be two non-negative integers"),
    "overlapping_offsets": ("offsets_contiguous", "'b' overlaps the previous tensor"),
    "gapped_offsets": ("offsets_contiguous", "gap before 'b'"),
    "offsets_past_end": ("data_length", "reach byte 4,104 but the file holds 8"),
    "trailing_bytes": ("data_length", "cover 8 bytes but 64 follow"),
    "reversed_offsets": ("offsets_contiguous", "ends (0) before it begins (8)"),
    "size_not_dtype_times_shape": ("tensor_size", "spans 8 bytes, its shape needs 12"),
    "unknown_dtype": ("dtype_known", "unknown dtype: 'a' (Q4_K)"),
    "huge_shape_product": ("tensor_size", "overflows"),
    "odd_subbyte_tensor": ("tensor_size", "does not fill whole bytes"),
    "boolean_shape": ("tensor_entry", "shape must be a list of non-negative integers"),
    "metadata_not_strings": ("metadata_strings", "must map strings to strings"),
}


def test_every_hostile_corpus_file_has_an_expectation() -> None:
    assert set(HOSTILE) == set(corpus.HOSTILE_SAFETENSORS)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_broken_or_hostile_file_is_refused_with_its_reason(tmp_path: Path, name: str) -> None:
    check, words = HOSTILE[name]
    path = corpus.HOSTILE_SAFETENSORS[name](tmp_path)

    header = read_header(path, roots=[tmp_path])

    assert header.failed
    assert words in _failures(header)[check]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_reader_is_no_looser_than_the_safetensors_library(tmp_path: Path, name: str) -> None:
    library = pytest.importorskip("safetensors")
    path = corpus.HOSTILE_SAFETENSORS[name](tmp_path)
    try:
        with library.safe_open(path, framework="numpy"):
            library_accepts = True
    except Exception:
        library_accepts = False

    # Refusing what the library accepts is allowed (duplicate names); accepting what it refuses is not.
    assert not (library_accepts and not read_header(path, roots=[tmp_path]).failed)


def test_a_file_the_library_wrote_is_read_as_the_library_reads_it(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    library = pytest.importorskip("safetensors.numpy")
    arrays = {
        "w": numpy.zeros((3, 5), dtype=numpy.float16),
        "b": numpy.ones(5, dtype=numpy.int64),
        "flag": numpy.zeros(2, dtype=numpy.bool_),
    }
    library.save_file(arrays, tmp_path / "np.safetensors", metadata={"source": "test"})

    header = safetensors.read(tmp_path / "np.safetensors")

    assert not header.failed
    assert header.params_count == sum(a.size for a in arrays.values())
    assert header.weights_bytes == sum(a.nbytes for a in arrays.values())
    assert header.dtypes == {"F16": 1, "I64": 1, "BOOL": 1}
    assert header.metadata["metadata"] == {"source": "test"}


@pytest.mark.parametrize("writer", [corpus.header_claims_99_mb, corpus.sparse_99_mb_not_json])
def test_a_claimed_99_mb_header_is_refused_without_reading_it(
    tmp_path: Path, writer: Callable[[Path], Path]
) -> None:
    path = writer(tmp_path)
    tracemalloc.start()
    try:
        header = read_header(path, roots=[tmp_path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert header.failed
    assert peak < 2 * 1024 * 1024


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reading_a_mangled_file_never_raises(tmp_path: Path, data: st.DataObject) -> None:
    valid = bytearray(corpus.safetensors_bytes(corpus.SMALL_TENSORS))
    for _ in range(data.draw(st.integers(1, 4))):
        valid[data.draw(st.integers(0, len(valid) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(valid)))
    path = corpus.write(tmp_path, "fuzz.safetensors", bytes(valid[:cut]))

    header = read_header(path, roots=[tmp_path])

    assert isinstance(header, FileHeader)


# The shard index


def test_an_index_names_its_shards_and_counts_its_tensors(tmp_path: Path) -> None:
    corpus.write_sharded(tmp_path, shards=3)

    metadata, checks, shards = safetensors.read_index(
        tmp_path / "model.safetensors.index.json", roots=[tmp_path]
    )

    assert shards == tuple(f"model-0000{n}-of-00003.safetensors" for n in (1, 2, 3))
    assert metadata == {"shards": 3, "tensors_indexed": 3, "total_size": corpus.SMALL_BYTES}
    assert {c.status for c in checks} == {"pass"}


def test_an_index_fails_when_a_shard_is_missing(tmp_path: Path) -> None:
    corpus.write_sharded(tmp_path, shards=2)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()

    _, checks, _ = safetensors.read_index(tmp_path / "model.safetensors.index.json")

    failed = {c.check: c.detail for c in checks if c.status == "fail"}
    assert failed == {"shards_exist": "missing: model-00002-of-00002.safetensors"}


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub\\..\\..\\x.safetensors"])
def test_an_index_refuses_shard_names_that_leave_its_folder(tmp_path: Path, shard: str) -> None:
    path = corpus.write_index(tmp_path / "models", {"w": shard})

    _, checks, _ = safetensors.read_index(path, roots=[tmp_path / "models"])

    failed = {c.check for c in checks if c.status == "fail"}
    assert "shard_paths_safe" in failed


def test_an_index_refuses_a_shard_symlinked_out_of_the_roots(tmp_path: Path) -> None:
    corpus.escaping_symlink(tmp_path / "models", tmp_path / "elsewhere", name="model-1.safetensors")
    path = corpus.write_index(tmp_path / "models", {"w": "model-1.safetensors"})

    _, checks, _ = safetensors.read_index(path, roots=[tmp_path / "models"])

    failed = {c.check: c.detail for c in checks if c.status == "fail"}
    assert failed == {"shards_inside_roots": "model-1.safetensors"}


@pytest.mark.parametrize("weight_map", [[], {}, {"w": 3}, "model.safetensors"])
def test_an_index_needs_a_weight_map_of_shard_names(tmp_path: Path, weight_map: object) -> None:
    path = corpus.write_json(tmp_path, "model.safetensors.index.json", {"weight_map": weight_map})

    _, checks, shards = safetensors.read_index(path)

    assert shards == ()
    assert [(c.check, c.status) for c in checks] == [("index_weight_map", "fail")]


def test_an_index_that_is_not_json_raises_format_error(tmp_path: Path) -> None:
    path = corpus.write(tmp_path, "model.safetensors.index.json", "{")

    with pytest.raises(FormatError, match="not valid JSON"):
        safetensors.read_index(path)
