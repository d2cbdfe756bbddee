"""The formats a model version or one of its files can have."""

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


_LABELS = {"hf": "Hugging Face folder", "gguf": "GGUF", "onnx": "ONNX", "pytorch": "PyTorch"}


def choices(formats: type[StrEnum]) -> list[tuple[str, str]]:
    return [(f.value, _LABELS.get(f.value, f.value.capitalize())) for f in formats]


MODEL_FORMAT_CHOICES = choices(ModelFormat)
FILE_FORMAT_CHOICES = choices(FileFormat)
