"""The GGUF header reader against the `gguf` package's own reader and writer, and hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import gguf as reference
import numpy as np
import pytest

from apps.models.formats import gguf
from tests.models.formats.corpus_gguf_onnx import (
    ARRAY,
    CHAT_TEMPLATE,
    STRING,
    TINY_TENSORS,
    TINY_TYPES,
    U16,
    U32,
    GgufTensor,
    Hostile,
    gguf_file,
    gguf_kv,
    hostile_gguf,
    tiny_gguf,
    tiny_gguf_kvs,
)
from tests.models.formats.measure import PEAK_BYTES, SECONDS, fails, measured


@pytest.fixture
def tiny_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(tiny_gguf())
    return path


def test_tiny_file_passes_every_check(tiny_path: Path) -> None:
    header = gguf.read(tiny_path)

    assert fails(header) == {}
    assert [c.status for c in header.checks if c.status != "pass"] == []
    assert header.format == "gguf"


def test_tensor_infos_match_the_reference_reader(tiny_path: Path) -> None:
    header = gguf.read(tiny_path)
    ref = reference.GGUFReader(tiny_path)

    assert header.tensor_count == len(ref.tensors)
    ours = [(t.name, t.dtype, t.shape, t.nbytes) for t in header.tensors]
    theirs = [
        (t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape)), int(t.n_bytes))
        for t in ref.tensors
    ]
    assert ours == theirs
    assert header.weights_bytes == sum(int(t.n_bytes) for t in ref.tensors)
    assert header.params_count == sum(int(t.n_elements) for t in ref.tensors)
    assert header.dtypes == TINY_TYPES


def test_metadata_names_the_model_like_the_reference_reader(tiny_path: Path) -> None:
    meta = gguf.read(tiny_path).metadata
    ref = reference.GGUFReader(tiny_path)

    def field(key: str) -> object:
        return ref.fields[key].contents()

    assert meta["kv_count"] == len(ref.fields) - 3  # the reader adds its own GGUF.* header fields
    assert meta["architecture"] == field("general.architecture") == "llama"
    assert meta["name"] == field("general.name")
    assert meta["context_length"] == field("llama.context_length") == 2048
    assert meta["block_count"] == 1
    assert meta["embedding_length"] == 64
    assert meta["feed_forward_length"] == 256
    assert (meta["head_count"], meta["head_count_kv"]) == (4, 2)
    assert meta["vocab_size"] == len(field("tokenizer.ggml.tokens")) == 256
    assert meta["tokenizer_model"] == "gpt2"
    assert (meta["file_type"], meta["quantization"]) == (7, "Q8_0")
    assert meta["tensor_types"] == TINY_TYPES
    assert meta["alignment"] == 32


def test_metadata_is_small_and_json_safe(tiny_path: Path) -> None:
    meta = gguf.read(tiny_path).metadata

    assert json.loads(json.dumps(meta)) == meta
    assert "tok255" not in json.dumps(meta)


def test_chat_template_is_checked_and_recorded_as_a_length_never_kept(tiny_path: Path) -> None:
    header = gguf.read(tiny_path)

    assert header.metadata["chat_template_bytes"] == len(CHAT_TEMPLATE)
    assert CHAT_TEMPLATE not in json.dumps(header.metadata)
    (check,) = [c for c in header.checks if c.check == "chat_template"]
    assert (check.status, "rendered only in MOC's sandbox" in check.detail) == ("pass", True)


def _with_template(path: Path, template: str) -> Path:
    writer = reference.GGUFWriter(path, "llama")
    writer.add_chat_template(template)
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_hostile_chat_template_fails_its_check_saying_why_and_the_rest_is_read(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    hostile = "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
    path = _with_template(tmp_path / "m.gguf", hostile)

    header = gguf.read(path)

    assert fails(header) == {
        "chat_template": "tokenizer.chat_template: the chat template reads the attribute '__globals__', "
        "a Python internal (line 1)"
    }
    assert [t.name for t in header.tensors] == ["output_norm.weight"]
    assert not marker.exists()


def test_a_chat_template_that_is_not_utf8_fails_its_check(tmp_path: Path) -> None:
    path = _with_template(tmp_path / "m.gguf", "{{ messages }}")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"{{ messages }}", b"{{ \xff\xfe }}".ljust(14)))

    assert fails(gguf.read(path)) == {
        "chat_template": "tokenizer.chat_template: the chat template is not UTF-8 text"
    }


def test_file_written_by_the_reference_writer_is_read_in_full(tmp_path: Path) -> None:
    path = tmp_path / "written.gguf"
    writer = reference.GGUFWriter(path, "qwen2")
    writer.add_name("from-gguf-writer")
    writer.add_context_length(32768)
    writer.add_block_count(2)
    writer.add_head_count(8)
    writer.add_file_type(reference.LlamaFileType.MOSTLY_F16)
    writer.add_token_list([f"t{i}" for i in range(5000)])
    writer.add_chat_template("{{ messages }}")
    writer.add_tensor("token_embd.weight", np.zeros((5000, 32), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    header = gguf.read(path)

    assert fails(header) == {}
    assert header.metadata["architecture"] == "qwen2"
    assert header.metadata["context_length"] == 32768
    assert header.metadata["quantization"] == "F16"
    assert header.metadata["vocab_size"] == 5000
    assert [(t.name, t.shape) for t in header.tensors] == [
        ("token_embd.weight", (5000, 32)),
        ("output_norm.weight", (32,)),
    ]
    assert header.params_count == 5000 * 32 + 32


def test_ggml_type_table_matches_the_reference() -> None:
    ours = {code: (name, block, size) for code, (name, block, size) in gguf.GGML_TYPES.items()}
    theirs = {int(t): (t.name, *reference.GGML_QUANT_SIZES[t]) for t in reference.GGMLQuantizationType}

    assert ours == theirs


def test_file_type_names_match_the_reference() -> None:
    for file_type in reference.LlamaFileType:
        if file_type != reference.LlamaFileType.GUESSED:
            expected = file_type.name.removeprefix("MOSTLY_").removeprefix("ALL_")
            assert gguf.FILE_TYPES[int(file_type)] == expected


def test_version_2_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "v2.gguf"
    path.write_bytes(gguf_file(kvs=tiny_gguf_kvs(), tensors=TINY_TENSORS, version=2))

    header = gguf.read(path)

    assert fails(header) == {}
    assert header.metadata["gguf_version"] == 2


def test_custom_alignment_places_the_data_on_its_boundary(tmp_path: Path) -> None:
    path = tmp_path / "aligned.gguf"
    kvs = [gguf_kv("general.architecture", STRING, "llama"), gguf_kv("general.alignment", U32, 64)]
    path.write_bytes(gguf_file(kvs=kvs, tensors=[GgufTensor("a", (8,)), GgufTensor("b", (8,))], alignment=64))

    header = gguf.read(path)

    assert fails(header) == {}
    assert header.metadata["alignment"] == 64


def test_per_layer_head_counts_report_the_largest(tmp_path: Path) -> None:
    path = tmp_path / "layers.gguf"
    kvs = [
        gguf_kv("general.architecture", STRING, "openelm"),
        gguf_kv("openelm.attention.head_count", ARRAY, (U32, [4, 8, 12] * 10)),
    ]
    path.write_bytes(gguf_file(kvs=kvs))

    assert gguf.read(path).metadata["head_count"] == 12


@pytest.mark.parametrize(
    ("name", "number", "references"),
    [
        ("tiny-00001-of-00003.gguf", 0, ("tiny-00002-of-00003.gguf", "tiny-00003-of-00003.gguf")),
        ("tiny-00002-of-00003.gguf", 1, ()),
        ("renamed.gguf", 0, ()),
    ],
)
def test_first_file_of_a_split_set_references_the_rest(
    tmp_path: Path, name: str, number: int, references: tuple[str, ...]
) -> None:
    kvs = [
        gguf_kv("general.architecture", STRING, "llama"),
        gguf_kv("split.no", U16, number),
        gguf_kv("split.count", U16, 3),
    ]
    path = tmp_path / name
    path.write_bytes(gguf_file(kvs=kvs, tensors=[GgufTensor("w", (32,))]))

    header = gguf.read(path)

    assert header.references == references
    assert header.metadata["split_count"] == 3


def test_missing_architecture_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "anonymous.gguf"
    path.write_bytes(gguf_file(tensors=[GgufTensor("w", (32,))]))

    header = gguf.read(path)

    assert not header.failed
    assert {c.check for c in header.checks if c.status == "warn"} == {"gguf_architecture"}


@pytest.mark.parametrize("hostile", hostile_gguf(), ids=lambda h: h.name)
def test_hostile_file_is_rejected_quickly_with_a_clear_reason(tmp_path: Path, hostile: Hostile) -> None:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(hostile.content)

    header, seconds, peak = measured(lambda: gguf.read(path))

    assert header.failed
    assert hostile.reason in fails(header).get(hostile.check, ""), fails(header)
    assert seconds < SECONDS
    assert peak < PEAK_BYTES
    assert max(header.weights_bytes, header.params_count or 0) < 1 << 63  # fits a BigIntegerField


def test_every_truncation_of_a_valid_file_fails_without_raising(tmp_path: Path) -> None:
    whole = tiny_gguf()
    path = tmp_path / "cut.gguf"

    for cut in [*range(0, 600), *range(600, len(whole), 97)]:
        path.write_bytes(whole[:cut])
        assert gguf.read(path).failed, cut


def test_a_large_vocabulary_is_walked_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "vocab.gguf"
    tokens = gguf_kv("tokenizer.ggml.tokens", ARRAY, (STRING, [f"token-{i:06d}" for i in range(300_000)]))
    path.write_bytes(gguf_file(kvs=[gguf_kv("general.architecture", STRING, "llama"), tokens]))

    header, seconds, peak = measured(lambda: gguf.read(path))

    assert header.metadata["vocab_size"] == 300_000
    assert peak < PEAK_BYTES
    assert seconds < 5


def test_a_folder_is_reported_unreadable_not_raised(tmp_path: Path) -> None:
    header = gguf.read(tmp_path)

    assert fails(header).keys() == {"readable"}
