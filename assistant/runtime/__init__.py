"""The model runtime: load a checkpoint (float or quantized), stream generations, fit the context.

    from assistant.runtime import load, stream_chat, GenerationConfig, TextDelta, Finished

The chat format itself lives in ``trainer.data.chat_format`` (the trainer's data stages use it
too); the token-level decoding engine in ``trainer.decode``.
"""

from assistant.runtime.generate import Finished, GenerationConfig, TextDelta, generate, stream, stream_chat
from assistant.runtime.loader import LoadedModel, load

__all__ = ["Finished", "GenerationConfig", "LoadedModel", "TextDelta", "generate", "load", "stream", "stream_chat"]
