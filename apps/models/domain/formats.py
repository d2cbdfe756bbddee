"""The formats a model version or one of its files can have, and what a file is by its name."""

import posixpath
from enum import StrEnum


class ModelFormat(StrEnum):
    """How a version's weights are stored, as a whole."""

    SAFETENSORS = "safetensors"
    HF = "hf"  # a Hugging Face folder: config.json plus weight shards
    GGUF = "gguf"
    ONNX = "onnx"
    PYTORCH = "pytorch"  # pickle-based; only ever read with the weights-only loader


class FileFormat(StrEnum):
    """What one file inside a version is."""

    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    ONNX = "onnx"
    PYTORCH = "pytorch"
    CONFIG = "config"  # config.json, generation_config.json, tokenizer files
    OTHER = "other"


# What a file is by its suffix: the one table discovery and the header readers share. PyTorch
# checkpoints are pickles; some tools write GGUF files under these names too, so the readers look
# at such a file's magic bytes (apps.models.formats.detect).
SUFFIX_FORMATS = {
    ".safetensors": FileFormat.SAFETENSORS,
    ".gguf": FileFormat.GGUF,
    ".onnx": FileFormat.ONNX,
    ".bin": FileFormat.PYTORCH,
    ".pt": FileFormat.PYTORCH,
    ".pth": FileFormat.PYTORCH,
    ".ckpt": FileFormat.PYTORCH,
}
# Pickles that are not weights a scan registers (a scikit-learn model, a cache), which the readers
# still scan as pickles when asked to read one.
OTHER_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle"})
WEIGHT_FORMATS = frozenset(SUFFIX_FORMATS.values())
# Tokenizer and vocabulary files that are not JSON but belong with a folder's config.
CONFIG_NAMES = frozenset(
    {"tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.txt", "merges.txt"}
)


def format_by_name(name: str) -> FileFormat:
    """A file's format from its name alone (its header may correct it: some .bin files are GGUF)."""
    lower = posixpath.basename(name.lower())
    suffix = posixpath.splitext(lower)[1]
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix]
    if suffix == ".json" or lower in CONFIG_NAMES:
        return FileFormat.CONFIG
    return FileFormat.OTHER


_LABELS = {"hf": "Hugging Face folder", "gguf": "GGUF", "onnx": "ONNX", "pytorch": "PyTorch"}


def choices(formats: type[StrEnum]) -> list[tuple[str, str]]:
    return [(f.value, _LABELS.get(f.value, f.value.capitalize())) for f in formats]


MODEL_FORMAT_CHOICES = choices(ModelFormat)
FILE_FORMAT_CHOICES = choices(FileFormat)
