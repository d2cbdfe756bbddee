"""GGUF header reader: metadata key/values and tensor infos, never the tensor data.

A GGUF file says how many tensors and keys it holds and how long each string and array is,
so a hostile file can ask a naive reader for terabytes. Every count and length is capped and
checked against the bytes the file has left *before* anything is allocated; big arrays
(tokenizer vocabularies) are skipped past, keeping only their length and first items.
A chat template is data: its presence and length are recorded, it is never rendered
(rendering one unsandboxed was CVE-2024-34359).

Layout (little-endian, versions 2 and 3): magic "GGUF", u32 version, u64 tensor count,
u64 key/value count, the key/values, the tensor infos (name, u32 n_dims, i64 dims, u32 ggml
type, u64 offset), padding to the alignment, then the tensor data.

Modules: reader (the container walk and its checks), source (the windowed, length-checked
reads), values (metadata values, arrays cut to their head), summary (the metadata the pages
show), tables (ggml tensor types, llama.cpp file types, metadata value types).
"""

from apps.models.formats.gguf.reader import read
from apps.models.formats.gguf.tables import FILE_TYPES, GGML_TYPES
from apps.models.formats.gguf.values import ArrayValue

__all__ = ["FILE_TYPES", "GGML_TYPES", "ArrayValue", "read"]
