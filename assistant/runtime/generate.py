"""The streaming generation API: text deltas as they are produced, then one ``Finished`` event.

    for event in stream(loaded, "def fib(n):", GenerationConfig(max_new_tokens=64), cancel=event):
        if isinstance(event, TextDelta):
            print(event.text, end="")
        else:
            print(event.stop_reason, event.tokens_per_s)

Deltas are UTF-8 safe (a character split across tokens arrives whole) and never show part of a
stop string. ``cancel`` (a ``threading.Event`` set from any thread, e.g. the TUI's) is checked
before every token, so generation stops within one token of it being set. Prompts longer than the
context are cut by ``assistant.runtime.context`` (system prompt kept), never an error.

Stop reasons: ``end`` (the model ended its turn: ``<|end|>``/``<|endoftext|>``), ``stop`` (a stop
string), ``length`` (max_new_tokens), ``context`` (the context window is full), ``cancelled``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.runtime.context import FittedPrompt, fit_conversation, fit_ids, reply_budget
from assistant.runtime.loader import LoadedModel
from assistant.runtime.text import IncrementalDetokenizer, StopStringFilter
from common.errors import UsageError
from trainer.decode import DecodeTimes, SamplingParams, decode_tokens

# logit bonus inside a tool call's string arguments for text copied from the request or the tool results
# (assistant/runtime/constrain.py); chosen on the stage-3 validation conversations (docs/RUNTIME.md)
DEFAULT_COPY_BIAS = 3.0
# the same bonus for an answer's text that quotes this turn's tool results (once the answer has begun)
DEFAULT_ANSWER_COPY_BIAS = 3.0


@dataclass
class GenerationConfig:
    max_new_tokens: int = 512
    min_new_tokens: int = 0  # the end-of-turn tokens are not chosen before this many tokens
    temperature: float = 0.7  # 0: greedy
    top_k: int = 50  # 0: off
    top_p: float = 0.95  # 1: off
    repetition_penalty: float = 1.0  # 1: off
    stop: Sequence[str] = ()  # stop strings (not included in the text)
    seed: int | None = None  # fixes the sampling for a given prompt and device
    context_window: int | None = None  # default: the model's
    constrain_tool_calls: bool = True  # stream_chat with tools: a call can only name an offered tool, in valid JSON
    # stream_chat with tools: logit bonus for argument text that copies the request or this turn's tool results
    copy_bias: float = DEFAULT_COPY_BIAS
    # stream_chat with tools: the same for answer text that quotes this turn's tool results
    answer_copy_bias: float = DEFAULT_ANSWER_COPY_BIAS

    def sampling(self) -> SamplingParams:
        try:
            return SamplingParams(self.temperature, self.top_k, self.top_p, self.repetition_penalty, self.seed)
        except ValueError as exc:
            raise UsageError(str(exc), "see 'assistant generate --help'") from None

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise UsageError(f"max_new_tokens {self.max_new_tokens} must be at least 1")
        self.sampling()


@dataclass
class TextDelta:
    text: str


@dataclass
class Finished:
    """The end of one generation, with what a status line shows."""

    text: str  # the whole reply (stop string and stop token excluded)
    stop_reason: str
    tokens: int  # new tokens generated
    prompt_tokens: int  # after fitting into the context
    first_token_s: float  # time to first token (prefill included)
    seconds: float  # wall time of the whole call
    tokens_per_s: float  # decode rate after the first token
    prompt: FittedPrompt = field(repr=False, default=None)
    notes: list[str] = field(default_factory=list)  # e.g. the tool-call constraint had to give up

    @property
    def complete(self) -> bool:
        """Did the model end the reply itself (or hit a stop string)?"""
        return self.stop_reason in ("end", "stop")


Event = TextDelta | Finished


def stream(loaded: LoadedModel, prompt: str | Sequence[int], config: GenerationConfig | None = None,
           cancel: threading.Event | None = None) -> Iterator[Event]:
    """Generate a continuation of ``prompt`` (text, or token ids)."""
    config = config or GenerationConfig()
    ids = loaded.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    if isinstance(prompt, str):
        ids = list(loaded.tokenizer.bos_ids) + ids
    window = config.context_window or loaded.context_window
    fitted = fit_ids(ids, reply_budget(window, config.max_new_tokens))
    return _run(loaded, fitted, config, cancel, window)


def stream_chat(loaded: LoadedModel, messages: Sequence[Mapping[str, Any]], config: GenerationConfig | None = None,
                cancel: threading.Event | None = None, tools: Sequence[Mapping] | None = None) -> Iterator[Event]:
    """Generate the assistant's next reply to ``messages`` in the chat format.

    Parse the finished text with ``trainer.data.chat_format.parse_reply(text, tools, complete=...)``.
    With ``tools`` and ``config.constrain_tool_calls`` (the default), a tool call can only name one
    of ``tools`` and its JSON always parses (``assistant.runtime.constrain``); text outside the call
    is untouched.
    """
    config = config or GenerationConfig()
    window = config.context_window or loaded.context_window
    fitted = fit_conversation(messages, loaded.tokenizer, reply_budget(window, config.max_new_tokens), tools)
    constraint = None
    if tools and config.constrain_tool_calls:
        from assistant.runtime.constrain import ToolCallConstraint

        constraint = ToolCallConstraint(loaded.tokenizer, tools, loaded.config.vocab_size,
                                        copy_source=copy_sources(messages), copy_bias=config.copy_bias,
                                        copy_names=summary_modules(messages),
                                        answer_source=answer_sources(messages), answer_copy_bias=config.answer_copy_bias)
    return _run(loaded, fitted, config, cancel, window, constraint)


def _this_turn(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The last user message and everything after it (empty without a user message)."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    return [] if last_user is None else list(messages[last_user:])


def copy_sources(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a tool call's arguments may copy from: the last user message and the tool results after it.

    (Not the project summary in the system message: its paths, ``shop/cart.py``, pulled module
    names in code toward ``shop/cart`` instead of ``shop.cart``; see ``summary_modules``.)"""
    return [str(m.get("content") or "") for m in _this_turn(messages) if m.get("role") in ("user", "tool")]


_CODE_MAP_ENTRY = re.compile(r"(?:^Code: |; )([\w/.-]+)\.py \(", re.MULTILINE)


def summary_modules(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The importable module names of the code map in the system message (``shop.cart`` for
    ``shop/cart.py``): an argument copy may continue into them, as an import names a module."""
    system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    names = []
    for path in _CODE_MAP_ENTRY.findall(system):
        parts = path.split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and all(part.isidentifier() for part in parts):
            names.append(".".join(parts))
    return list(dict.fromkeys(names))


def answer_sources(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """What an answer may quote: the values in this turn's tool results, as plain text, and the
    request; nothing when no tool has answered since the last user message."""
    turn = _this_turn(messages)
    results = [str(m.get("content") or "") for m in turn if m.get("role") == "tool"]
    if not results:
        return []
    return [str(turn[0].get("content") or "")] + [value for r in results for value in _plain_values(r)]


def _plain_values(result: str) -> list[str]:
    """The string and number values of a JSON tool result, in order (the result itself if it is not JSON)."""
    try:
        return list(_leaves(json.loads(result)))
    except ValueError:
        return [result]


def _leaves(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from _leaves(item)
    elif isinstance(node, str):
        yield node
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield str(node)


def generate(loaded: LoadedModel, prompt: str | Sequence[int], config: GenerationConfig | None = None) -> Finished:
    """The whole reply at once (the last event of ``stream``)."""
    event = None
    for event in stream(loaded, prompt, config):
        pass
    return event


def _run(loaded: LoadedModel, fitted: FittedPrompt, config: GenerationConfig, cancel: threading.Event | None,
         window: int, constraint=None) -> Iterator[Event]:
    config.validate()
    if not fitted.ids:
        fitted = FittedPrompt([loaded.tokenizer.eos_id])  # an empty prompt starts a new document
    started = time.perf_counter()
    stop_ids = set(loaded.stop_ids)
    times = DecodeTimes()
    detok = IncrementalDetokenizer(loaded.tokenizer, fitted.ids)
    stops = StopStringFilter(config.stop)
    tokens = decode_tokens(loaded.model, fitted.ids, config.max_new_tokens, config.sampling(), stop_ids,
                           context=window, times=times, min_new_tokens=config.min_new_tokens, constraint=constraint)
    reason = None
    text = []
    try:
        while True:
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            token = next(tokens, None)
            if token is None:
                break
            if token in stop_ids:
                reason = "end"
                break
            shown = stops.push(detok.push(token))
            if shown:
                text.append(shown)
                yield TextDelta(shown)
            if stops.stopped:
                reason = "stop"
                break
    finally:
        tokens.close()
    if reason is None:
        reason = "length" if times.tokens >= config.max_new_tokens else "context"
    if reason != "stop":
        tail = stops.push(detok.flush()) + stops.flush()
        if tail:
            text.append(tail)
            yield TextDelta(tail)
    rate = (times.tokens - 1) / times.decode_s if times.tokens > 1 and times.decode_s > 0 else 0.0
    yield Finished(text="".join(text), stop_reason=reason, tokens=times.tokens, prompt_tokens=len(fitted.ids),
                   first_token_s=times.first_token_s, seconds=time.perf_counter() - started, tokens_per_s=rate,
                   prompt=fitted, notes=list(constraint.notes) if constraint is not None else [])
