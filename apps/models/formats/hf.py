"""Hugging Face folders: what config.json, the tokenizer files and adapter_config.json say.

The JSON files are read bounded (10 MB) and must be objects. A chat template is data: its
presence and length are recorded, and every one transformers would load (the config's,
chat_template.jinja, additional_chat_templates/*.jinja) is read (parsed, never rendered: templates
have run code on hosts that rendered them, CVE-2024-34359) so that one reaching for Python
internals fails the folder's checks (apps.models.domain.chat_template).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apps.models.domain.chat_template import MAX_TEMPLATE_CHARS, template_problem
from apps.models.domain.headers import Check
from apps.models.formats.base import FormatError

MAX_JSON_BYTES = 10 * 1024 * 1024

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
)
TEMPLATE_FILE = "chat_template.jinja"
TEMPLATE_DIR = "additional_chat_templates"
MAX_EXTRA_TEMPLATES = 32
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Files sentence-transformers writes beside an embedding model's config.json.
_EMBEDDING_MARKERS = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")

# The config keys copied into the version's metadata, under the names HF (and vram.py) use;
# older architectures spell them differently (GPT-2: n_layer, n_embd, n_head).
_ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "multi_query_group_num"),
    "head_dim": ("head_dim",),
    "intermediate_size": ("intermediate_size", "n_inner", "d_ff", "ffn_dim"),
    "context_length": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    # What the parameter count a config implies depends on (apps.models.domain.params), and the
    # token embedding's width where it is not the hidden size (ALBERT, ELECTRA, OPT-350m).
    "embedding_size": ("embedding_size", "word_embed_proj_dim"),
    "num_local_experts": ("num_local_experts",),
    "attention_bias": ("attention_bias",),
    "mlp_bias": ("mlp_bias",),
}
_PATH_MAX = 1024  # ModelVersion.path's length
_INT_LIMIT = 1 << 40  # far above any real size; keeps hostile numbers out of later arithmetic
_REQUIRED: dict[str, tuple[str, ...]] = {
    "causal-lm": ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"),
    "seq2seq-lm": ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"),
    "embedding": ("num_hidden_layers", "hidden_size"),
    "masked-lm": ("num_hidden_layers", "hidden_size", "vocab_size"),
}
_GENERATION_KEYS = ("max_length", "max_new_tokens", "eos_token_id", "do_sample", "temperature")
_ADAPTER_REQUIRED = ("peft_type", "base_model_name_or_path")
_LORA_REQUIRED = ("r", "lora_alpha", "target_modules")


def load_json(path: Path, *, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A small JSON object from disk; FormatError if too large, not JSON, not an object, or a key repeats."""
    name = Path(path).name
    with open(path, "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise FormatError(f"{name} is larger than {limit:,} bytes; not read", "json_size")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"key {key[:60]!r} given twice")
            result[key] = value
        return result

    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs)
    except UnicodeDecodeError:
        raise FormatError(f"{name} is not UTF-8 text", "json_object") from None
    except (ValueError, RecursionError) as error:
        raise FormatError(f"{name} is not valid JSON: {str(error)[:120]}", "json_object") from None
    if not isinstance(data, dict):
        raise FormatError(f"{name} holds a JSON {type(data).__name__}, not an object", "json_object")
    return data


def read_folder(folder: Path, names: Sequence[str]) -> tuple[dict[str, Any], tuple[Check, ...], str]:
    """A folder's metadata, checks and kind (causal-lm, embedding, adapter, ...) from its config files.

    `names` are the version's files relative to `folder`; only those are opened, never a
    file the caller did not list. The kind is "" when nothing says what the model is.
    """
    folder = Path(folder)
    present = set(names)
    metadata: dict[str, Any] = {}
    checks: list[Check] = []

    config = _load(folder, "config.json", present, checks, "config_json")
    adapter = _load(folder, "adapter_config.json", present, checks, "adapter_config_json")
    if config is not None:
        metadata.update(_arch(config))
    kind = _kind(config, adapter, present)
    if config is not None and kind in _REQUIRED:
        checks.append(_required(metadata, config, kind))
    if adapter is not None:
        metadata["adapter"], adapter_checks = _adapter(adapter, present)
        checks.extend(adapter_checks)
    elif kind == "adapter" and "adapter_config.json" not in present:
        detail = "adapter weights without an adapter_config.json: the base model is unknown"
        checks.append(Check("adapter_required_keys", "fail", detail))

    tokenizers = [name for name in TOKENIZER_FILES if name in present]
    if tokenizers:
        metadata["tokenizer_files"] = tokenizers
    if kind in ("causal-lm", "seq2seq-lm", "embedding", "masked-lm"):
        if tokenizers:
            checks.append(Check("tokenizer_present", "pass", ", ".join(tokenizers)))
        else:
            detail = "no tokenizer.json, tokenizer.model or vocab file: a runtime must be given one"
            checks.append(Check("tokenizer_present", "warn", detail))

    tokenizer_config = _load(folder, "tokenizer_config.json", present, checks, "tokenizer_config_json")
    templates = _templates(folder, tokenizer_config or {}, present, checks)
    if templates:
        metadata["chat_template"] = _chat_template(templates)
        checks.append(_template_check(templates))
    generation = _load(folder, "generation_config.json", present, checks, "generation_config_json")
    if generation is not None:
        metadata["generation"] = _pick(generation, _GENERATION_KEYS)
    return metadata, tuple(checks), kind


def _load(
    folder: Path, name: str, present: set[str], checks: list[Check], check: str
) -> dict[str, Any] | None:
    if name not in present:
        return None
    try:
        data = load_json(folder / name)
    except FormatError as error:
        checks.append(Check(check, "fail", error.detail, name))
        return None
    except OSError as error:
        checks.append(Check(check, "fail", f"could not read {name}: {error.strerror or error}", name))
        return None
    checks.append(Check(check, "pass", f"a JSON object with {len(data)} keys", name))
    return data


def _arch(config: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    architectures = config.get("architectures")
    if isinstance(architectures, list):
        found["architectures"] = [a[:100] for a in architectures[:8] if isinstance(a, str)]
    for key in ("model_type", "torch_dtype", "dtype"):
        if isinstance(config.get(key), str):
            found["torch_dtype" if key == "dtype" else key] = config[key][:50]
    # Multimodal configs (Llava, Gemma 3) keep the language model's sizes in text_config.
    text = config.get("text_config")
    sources = [config, text] if isinstance(text, dict) else [config]
    for name, aliases in _ARCH_KEYS.items():
        for source in sources:
            value = next((source[a] for a in aliases if a in source), None)
            if value is not None:
                found[name] = value if _size(value) else _brief(value)
                break
    quantization = config.get("quantization_config")
    if isinstance(quantization, dict) and isinstance(quantization.get("quant_method"), str):
        found["quantization"] = quantization["quant_method"][:50]
    if config.get("is_encoder_decoder") is True:
        found["is_encoder_decoder"] = True
    return found


def _kind(config: dict[str, Any] | None, adapter: dict[str, Any] | None, present: set[str]) -> str:
    if adapter is not None or any(name in present for name in ADAPTER_WEIGHTS):
        return "adapter"
    if config is None:
        return ""
    architectures = config.get("architectures")
    names = [a for a in architectures if isinstance(a, str)] if isinstance(architectures, list) else []
    if any(marker in present for marker in _EMBEDDING_MARKERS):
        return "embedding"
    if any(a.endswith("ForConditionalGeneration") for a in names) and config.get("is_encoder_decoder"):
        return "seq2seq-lm"
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in names):
        return "causal-lm"
    if any(a.endswith("ForMaskedLM") for a in names):
        return "masked-lm"
    if any(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in names):
        return "classifier"
    # A bare encoder (BertModel, XLMRobertaModel) is served for its embeddings.
    if any(a.endswith("Model") for a in names):
        return "embedding"
    return "other"


def _required(metadata: dict[str, Any], config: dict[str, Any], kind: str) -> Check:
    missing = [key for key in _REQUIRED[kind] if key not in metadata]
    if "architectures" not in metadata and not isinstance(config.get("model_type"), str):
        missing.insert(0, "architectures or model_type")
    invalid = [key for key in _REQUIRED[kind] if key in metadata and not _size(metadata[key])]
    if missing or invalid:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"{key} must be a positive integer (got {metadata[key]!r})" for key in invalid]
        return Check("config_required_keys", "fail", f"a {kind} config: " + "; ".join(parts), "config.json")
    return Check("config_required_keys", "pass", f"a {kind} config with its sizes", "config.json")


def _adapter(adapter: dict[str, Any], present: set[str]) -> tuple[dict[str, Any], list[Check]]:
    info = _pick(adapter, ("peft_type", "base_model_name_or_path", "r", "lora_alpha", "task_type"))
    base = adapter.get("base_model_name_or_path")
    if isinstance(base, str):
        # Whole, up to the longest path a version can have: discovery finds the base by it.
        info["base_model_name_or_path"] = base[:_PATH_MAX]
    modules = adapter.get("target_modules")
    if isinstance(modules, list):
        info["target_modules"] = [m[:60] for m in modules[:32] if isinstance(m, str)]
    elif isinstance(modules, str):
        info["target_modules"] = modules[:200]
    required = _ADAPTER_REQUIRED + (_LORA_REQUIRED if adapter.get("peft_type") == "LORA" else ())
    missing = [key for key in required if adapter.get(key) in (None, "", [])]
    if missing:
        check = Check("adapter_required_keys", "fail", f"missing {', '.join(missing)}", "adapter_config.json")
    else:
        base = str(adapter["base_model_name_or_path"])[:100]
        detail = f"{str(adapter['peft_type'])[:20]} adapter of {base}"
        check = Check("adapter_required_keys", "pass", detail, "adapter_config.json")
    weights = [name for name in ADAPTER_WEIGHTS if name in present]
    if weights:
        weights_check = Check("adapter_weights", "pass", weights[0])
    else:
        weights_check = Check("adapter_weights", "fail", "no adapter_model.safetensors or adapter_model.bin")
    return info, [check, weights_check]


def _templates(
    folder: Path, tokenizer_config: dict[str, Any], present: set[str], checks: list[Check]
) -> dict[str, str]:
    """Every chat template transformers would load from the folder, by where it is: tokenizer_config.json's
    chat_template ("" for one text, or by name), chat_template.jinja and additional_chat_templates/*.jinja
    (by path). transformers prefers the files to the config's entry; all are read and checked."""
    found: dict[str, str] = {}
    template = tokenizer_config.get("chat_template")
    if isinstance(template, str):
        found[""] = template
    elif isinstance(template, list):
        for t in template:
            if isinstance(t, dict) and isinstance(t.get("template"), str):
                found[str(t.get("name"))[:40]] = t["template"]
    files = _template_files(folder, present, checks)
    for name in files:
        try:
            path = folder / name
            if not path.is_file():  # a FIFO would block; a symlink is followed, as transformers does
                raise OSError("not a regular file")
            with open(path, "rb") as handle:
                found[name] = handle.read(MAX_TEMPLATE_CHARS * 4 + 1).decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            checks.append(Check("chat_template", "fail", f"could not read it: {error}"[:200], name))
    return found


def _template_files(folder: Path, present: set[str], checks: list[Check]) -> list[str]:
    """chat_template.jinja where listed, and additional_chat_templates/*.jinja: the folder's own
    listing holds no subfolder's files, so that one is looked into here as transformers does (its
    .jinja files only, at most MAX_EXTRA_TEMPLATES; Hugging Face's cache makes them symlinks)."""
    files = [TEMPLATE_FILE] if TEMPLATE_FILE in present else []
    extra = folder / TEMPLATE_DIR
    try:
        if extra.is_dir():
            names = sorted(p.name for p in extra.iterdir() if p.name.endswith(".jinja"))
            files += [f"{TEMPLATE_DIR}/{name}" for name in names[:MAX_EXTRA_TEMPLATES]]
    except OSError as error:
        checks.append(Check("chat_template", "fail", f"could not list it: {error}"[:200], TEMPLATE_DIR))
    return files


def _chat_template(templates: dict[str, str]) -> dict[str, Any]:
    """The chat templates' length (and names, where there are named ones)."""
    info: dict[str, Any] = {"present": True, "length": sum(map(len, templates.values()))}
    if list(templates) != [""]:
        info["names"] = [name or "tokenizer_config.json" for name in templates][:8]
    return info


def _template_check(templates: dict[str, str]) -> Check:
    """Fails on the first template MOC would refuse to render, saying why."""
    for name, source in templates.items():
        problem = template_problem(source)
        if problem is not None:
            where = f"{name!r}: " if name else ""
            return Check("chat_template", "fail", f"{where}{problem}"[:500])
    return Check("chat_template", "pass", "read, never run: rendered only in MOC's sandbox")


def _pick(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: _brief(data[key]) for key in keys if key in data}


def _brief(value: Any) -> Any:
    """A JSON-safe, small copy of a config value for the pages."""
    if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < _INT_LIMIT):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # NaN is not storable JSON
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, list) and len(value) <= 16:
        return [_brief(v) for v in value if not isinstance(v, list | dict)]
    return repr(value)[:60]


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < _INT_LIMIT
