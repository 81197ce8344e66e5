"""Where the model's replies come from: the runtime (a loaded checkpoint) behind one small protocol.

The loop only needs "given these messages and tools, stream a reply's text" and "count tokens";
``RuntimeModel`` does both with ``assistant.runtime`` and the model's own tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class Generated:
    """One model call: the whole reply text, whether it ended by itself, and its speed."""

    text: str
    complete: bool
    stop_reason: str  # the runtime's: end, stop, length, context, cancelled
    tokens: int = 0
    tokens_per_s: float = 0.0
    prompt_tokens: int = 0


class ReplySource(Protocol):
    """What produces the model's text. ``RuntimeModel`` is the real one."""

    name: str
    context_window: int

    def count(self, text: str) -> int: ...

    def generate(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
                 on_text: Callable[[str], None], cancel: threading.Event, *, max_new_tokens: int,
                 temperature: float, top_k: int, top_p: float, seed: int | None, copy_bias: float,
                 answer_copy_bias: float) -> Generated: ...


class RuntimeModel:
    """A ``LoadedModel`` (``assistant.runtime.load``) as a reply source."""

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self.context_window = int(loaded.context_window)
        meta = loaded.metadata or {}
        step = f"@{meta['step']}" if meta.get("step") is not None else ""
        self.name = f"{loaded.path.name}{step}"
        self.description = loaded.describe()

    def count(self, text: str) -> int:
        return len(self.loaded.tokenizer.encode(text)) if text else 0

    def render_count(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> int:
        from trainer.data.chat_format import render

        return len(render(messages, self.loaded.tokenizer, tools=tools, add_generation_prompt=True))

    def generate(self, messages, tools, on_text, cancel, *, max_new_tokens, temperature, top_k, top_p, seed,
                 copy_bias: float | None = None, answer_copy_bias: float | None = None) -> Generated:
        from assistant.runtime import Finished, GenerationConfig, TextDelta, stream_chat

        config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                  seed=seed)
        if copy_bias is not None:
            config.copy_bias = copy_bias
        if answer_copy_bias is not None:
            config.answer_copy_bias = answer_copy_bias
        finished = None
        for event in stream_chat(self.loaded, messages, config, cancel=cancel, tools=list(tools) or None):
            if isinstance(event, TextDelta):
                on_text(event.text)
            elif isinstance(event, Finished):
                finished = event
        return Generated(text=finished.text, complete=finished.complete, stop_reason=finished.stop_reason,
                         tokens=finished.tokens, tokens_per_s=finished.tokens_per_s, prompt_tokens=finished.prompt_tokens)


def as_reply_source(model: Any) -> ReplySource | None:
    """A ``LoadedModel`` becomes a ``RuntimeModel``; a reply source or None passes through."""
    if model is None or hasattr(model, "generate") and hasattr(model, "count"):
        return model
    return RuntimeModel(model)
