"""The OpenAI API as MOC's data plane speaks it, in pure Python: requests parsed into the device
worker's wire params (parsing), answers and stream chunks shaped from its results and frames
(shapes), and refusals in OpenAI's error shape (errors). Exactly the shapes the official `openai`
SDK parses; the tests check them with the SDK's own types.
"""

from apps.deployments.domain.openai.errors import ApiError, invalid, refused
from apps.deployments.domain.openai.parsing import (
    ChatCall,
    CompletionCall,
    EmbeddingsCall,
    body_of,
    parse_chat,
    parse_completion,
    parse_embeddings,
)
from apps.deployments.domain.openai.shapes import (
    DONE,
    ChatStream,
    CompletionStream,
    ModelEntry,
    chat,
    chat_logprobs,
    completion,
    completion_logprobs,
    embeddings,
    error_event,
    model,
    models,
    sse,
)

__all__ = [
    "DONE",
    "ApiError",
    "ChatCall",
    "ChatStream",
    "CompletionCall",
    "CompletionStream",
    "EmbeddingsCall",
    "ModelEntry",
    "body_of",
    "chat",
    "chat_logprobs",
    "completion",
    "completion_logprobs",
    "embeddings",
    "error_event",
    "invalid",
    "model",
    "models",
    "parse_chat",
    "parse_completion",
    "parse_embeddings",
    "refused",
    "sse",
]
