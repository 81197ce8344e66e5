"""The one chat and tool-call format: rendering conversations to token ids, and parsing replies.

Every turn is a role token, its content and ``<|end|>``::

    <|system|>You are a coding assistant.
    <BLANKLINE>
    Available tools, one JSON schema per line:
    {"name": "execute_python", "description": "...", "parameters": {...}}<|end|>
    <|user|>What is 2**10? <|image|><|end|>
    <|assistant|>Let me run it.<|tool_call|>{"name": "execute_python", "arguments": {"code": "print(2**10)"}}<|end|>
    <|tool_result|>{"tool": "execute_python", "ok": true, "stdout": "1024\\n"}<|end|>
    <|assistant|>2**10 is 1024.<|end|>

A reply is generated after a final ``<|assistant|>`` and ends at ``<|end|>`` (or ``<|endoftext|>``).
It is either a final answer (plain text) or optional text, then ``<|tool_call|>`` and one JSON
object ``{"name": ..., "arguments": {...}}``. The trainer's data stages, the runtime and the app
all import this module, so the format has one definition.

Messages are dicts, close to the OpenAI shape: ``{"role": "system"|"user"|"assistant"|"tool",
"content": str | [parts]}``; an assistant message may carry ``"tool_call": {"name", "arguments"}``;
a content part is ``{"type": "text", "text": ...}`` or ``{"type": "image"}`` (the ``<|image|>``
placeholder a multi-modal stage fills in). Text that merely spells a special token (a user pasting
``<|end|>``) is encoded as ordinary text, never as the control token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer import TrainerError

SYSTEM, USER, ASSISTANT, TOOL_CALL, TOOL_RESULT, END, IMAGE, EOS = (
    "<|system|>", "<|user|>", "<|assistant|>", "<|tool_call|>", "<|tool_result|>", "<|end|>", "<|image|>",
    "<|endoftext|>",
)
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT, "tool": TOOL_RESULT}
TOOLS_HEADER = "Available tools, one JSON schema per line:"
TOOLS_HEADER_COMPACT = "Available tools:"
TOOLS_STYLES = ("full", "compact")


@dataclass
class Rendered:
    """Token ids of a conversation and its loss mask (1 where the token is an assistant target)."""

    ids: list[int]
    mask: list[int]

    def __len__(self) -> int:
        return len(self.ids)


# ---- rendering --------------------------------------------------------------------------------


def _parts(content: Any) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, Mapping):  # a tool result given as an object
        return [{"type": "text", "text": json.dumps(content, ensure_ascii=False)}]
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
            elif isinstance(part, Mapping) and part.get("type") in ("text", "image"):
                parts.append(dict(part))
            else:
                raise TrainerError(f"unknown message part {part!r:.60}", "use {'type': 'text', 'text': ...} or {'type': 'image'}")
        return parts
    raise TrainerError(f"message content of type {type(content).__name__} is not text", "pass a string or a list of parts")


def tool_call_json(name: str, arguments: Mapping[str, Any]) -> str:
    """The canonical text of a tool call (what the model is trained to write)."""
    return json.dumps({"name": name, "arguments": dict(arguments)}, ensure_ascii=False)


def tools_block(tools: Sequence[Mapping[str, Any]], style: str = "full") -> str:
    """The tool list appended to the system prompt: one compact JSON schema per line.

    ``style="compact"`` lists one signature per line (``name(arg: type, opt?: type) - first
    sentence``): about a seventh of the tokens, for small models with short context windows. A
    checkpoint records the style it was trained with (``chat.tools_style``) and the runtime uses it.
    """
    if style == "compact":
        return TOOLS_HEADER_COMPACT + "\n" + "\n".join(_signature(t) for t in tools)
    if style != "full":
        raise TrainerError(f"unknown tools style '{style}'", f"use one of {', '.join(TOOLS_STYLES)}")
    lines = [json.dumps({"name": t["name"], "description": t.get("description", ""), "parameters": t.get("parameters", {})},
                        ensure_ascii=False, separators=(",", ":")) for t in tools]
    return TOOLS_HEADER + "\n" + "\n".join(lines)


def _signature(tool: Mapping[str, Any]) -> str:
    parameters = tool.get("parameters") or {}
    required = set(parameters.get("required") or [])
    args = []
    for name, spec in (parameters.get("properties") or {}).items():
        kind = spec.get("type") or ("enum" if "enum" in spec else "any")
        if kind == "array":
            kind = f"array of {(spec.get('items') or {}).get('type', 'enum')}"
        args.append(f"{name}{'' if name in required else '?'}: {kind}")
    description = re.split(r"\. |: | \(|;", str(tool.get("description", "")))[0].rstrip(".")
    return f"{tool['name']}({', '.join(args)}) - {description}"


def _segments(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping] | None, add_generation_prompt: bool,
              tools_style: str = "full"):
    """(kind, value, trained) pieces: kind 'special' (a token string) or 'text' (ordinary text)."""
    messages = list(messages)
    if tools:
        if messages and messages[0].get("role") == "system":
            first = dict(messages[0])
            text = "".join(p.get("text", "") for p in _parts(first.get("content")) if p["type"] == "text")
            first["content"] = (text + "\n\n" if text else "") + tools_block(tools, tools_style)
            messages[0] = first
        else:
            messages.insert(0, {"role": "system", "content": tools_block(tools, tools_style)})
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLE_TOKENS:
            raise TrainerError(f"message {index} has unknown role {role!r}", "roles are system, user, assistant, tool")
        trained = role == "assistant" and message.get("train", True)
        yield "special", ROLE_TOKENS[role], False
        for part in _parts(message.get("content")):
            if part["type"] == "image":
                yield "special", IMAGE, trained
            elif part.get("text"):
                yield "text", part["text"], trained
        call = message.get("tool_call")
        if call is not None:
            if role != "assistant":
                raise TrainerError(f"message {index} ({role}) carries a tool call", "only assistant messages call tools")
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                raise TrainerError(f"message {index} has a malformed tool_call", "use {'name': str, 'arguments': {...}}")
            yield "special", TOOL_CALL, trained
            yield "text", tool_call_json(call["name"], call.get("arguments") or {}), trained
        yield "special", END, trained
    if add_generation_prompt:
        yield "special", ASSISTANT, False


def render_text(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping] | None = None,
                add_generation_prompt: bool = False, tools_style: str = "full") -> str:
    """The conversation as one string (for reading and logs; ``render`` gives the token ids)."""
    return "".join(value for _, value, _ in _segments(messages, tools, add_generation_prompt, tools_style))


class _TextEncoder:
    """Encodes ordinary text so that spelled-out special tokens stay ordinary text."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        specials = sorted(_special_strings(tokenizer), key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(s) for s in specials)) if specials else None

    def __call__(self, text: str) -> list[int]:
        if self.pattern is None or not self.pattern.search(text):
            return self.tokenizer.encode(text)
        ids: list[int] = []
        position = 0
        for match in self.pattern.finditer(text):
            if match.start() > position:
                ids += self.tokenizer.encode(text[position : match.start()])
            token = match.group()
            ids += self.tokenizer.encode(token[:1]) + self.tokenizer.encode(token[1:])  # split: never the control id
            position = match.end()
        if position < len(text):
            ids += self.tokenizer.encode(text[position:])
        return ids


def _special_strings(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend", None)
    if backend is not None and hasattr(backend, "get_added_tokens_decoder"):
        return {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    return set(getattr(tokenizer, "special_ids", {}))


def render(messages: Sequence[Mapping[str, Any]], tokenizer, *, tools: Sequence[Mapping] | None = None,
           add_generation_prompt: bool = False, tools_style: str | None = None) -> Rendered:
    """Token ids and loss mask of a conversation.

    ``tokenizer`` is a ``trainer.data.tokenizer.TextTokenizer``. ``tools`` (e.g.
    ``sandbox.tools.tool_schemas()``) are listed in the system prompt. ``add_generation_prompt``
    ends with ``<|assistant|>`` for the model to continue. ``mask[i]`` is 1 when token i is part of
    an assistant turn (its text, tool call and closing ``<|end|>``): train on targets ``ids[1:]``
    with ``mask[1:]``. An assistant message with ``"train": False`` is context, not a target.
    ``tools_style`` (full/compact) defaults to the tokenizer's ``tools_style`` (set by the loader from
    the checkpoint), else full.
    """
    style = tools_style or getattr(tokenizer, "tools_style", None) or "full"
    encode = _TextEncoder(tokenizer)
    ids: list[int] = list(getattr(tokenizer, "bos_ids", []) or [])
    mask: list[int] = [0] * len(ids)
    for kind, value, trained in _segments(messages, tools, add_generation_prompt, style):
        if kind == "special":
            token_id = tokenizer.token_to_id(value)
            if token_id is None:
                raise TrainerError(f"the tokenizer lacks the chat token {value}", "use a tokenizer made by 'assistant data tokenizer' or 'assistant model import'")
            piece = [token_id]
        else:
            piece = encode(value)
        ids += piece
        mask += [int(trained)] * len(piece)
    return Rendered(ids, mask)


def stop_token_ids(tokenizer) -> list[int]:
    """Tokens that end a reply: ``<|end|>``, ``<|endoftext|>`` and an imported model's own EOS."""
    ids = [tokenizer.token_to_id(END), tokenizer.token_to_id(EOS)]
    ids += list(getattr(tokenizer, "extra_stop_ids", []) or [])
    return sorted({i for i in ids if i is not None})


# ---- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalAnswer:
    """A reply without a tool call. ``truncated``: generation stopped before ``<|end|>``."""

    content: str
    truncated: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A validated call: ``arguments`` fit the tool's JSON schema. ``content``: text before it."""

    name: str
    arguments: dict
    content: str = ""

    def to_message(self) -> dict:
        return {"role": "assistant", "content": self.content, "tool_call": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolCallError:
    """A malformed tool call, to be fed back to the model as a tool result; never an exception.

    kind: bad_json | bad_shape | unknown_tool | invalid_arguments | truncated.
    """

    kind: str
    message: str
    raw: str
    content: str = ""
    details: dict = field(default_factory=dict)

    def feedback(self) -> dict:
        """The tool-result message that tells the model what to fix."""
        result = {"ok": False, "error": self.message, "hint": _HINTS[self.kind], **self.details}
        return {"role": "tool", "content": json.dumps(result, ensure_ascii=False)}


_HINTS = {
    "bad_json": 'write exactly one JSON object: {"name": "<tool>", "arguments": {...}}',
    "bad_shape": 'write exactly one JSON object: {"name": "<tool>", "arguments": {...}}',
    "unknown_tool": "call one of the listed tools",
    "invalid_arguments": "fix the arguments to fit the tool's parameters",
    "truncated": "the call was cut off by the token limit; make it shorter",
}

Reply = FinalAnswer | ToolCall | ToolCallError


def _strip_end(text: str) -> str:
    for marker in (END, EOS):
        index = text.find(marker)
        if index != -1:
            text = text[:index]
    return text


def _tool_table(tools: Iterable[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    if tools is None:
        from sandbox.tools import tool_schemas

        tools = tool_schemas()
    return {t["name"]: t for t in tools}


def parse_reply(text: str, tools: Iterable[Mapping[str, Any]] | None = None, complete: bool = True) -> Reply:
    """Turn generated text into a final answer, a validated tool call, or a structured error.

    ``tools``: the schemas offered to the model (default: every tool of ``sandbox.tools``).
    ``complete``: False when generation stopped before ``<|end|>`` (max tokens, context, cancel).
    Never raises for anything the model can write.
    """
    text = _strip_end(text)
    if TOOL_CALL not in text:
        return FinalAnswer(text.strip(), truncated=not complete)
    content, _, payload = text.partition(TOOL_CALL)
    content, payload = content.strip(), payload.strip()
    if not complete:
        return ToolCallError("truncated", "the tool call was cut off before it ended", payload, content)
    try:
        call, end = json.JSONDecoder().raw_decode(payload)
    except ValueError as exc:
        return ToolCallError("bad_json", f"the tool call is not valid JSON: {exc}", payload, content)
    if payload[end:].strip():
        return ToolCallError("bad_json", f"unexpected text after the tool call's JSON: {payload[end:].strip()[:60]!r}", payload, content)
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return ToolCallError("bad_shape", 'the tool call must be an object with a "name" string', payload, content)
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models quote the arguments object
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return ToolCallError("bad_json", f"the arguments string is not valid JSON: {exc}", payload, content)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ToolCallError("bad_shape", '"arguments" must be a JSON object', payload, content)
    table = _tool_table(tools)
    name = call["name"]
    if name not in table:
        return ToolCallError("unknown_tool", f"unknown tool '{name}'", payload, content, {"known_tools": sorted(table)})
    problem = _validation_error(name, table[name].get("parameters") or {}, arguments)
    if problem:
        return ToolCallError("invalid_arguments", problem, payload, content, {"parameters": table[name].get("parameters")})
    return ToolCall(name, arguments, content)


def _validation_error(name: str, parameters: Mapping[str, Any], arguments: dict) -> str | None:
    """The sandbox's own check (one line, or None), so the agent and the tools agree on validity."""
    from types import SimpleNamespace

    from sandbox.tools import validation_error

    return validation_error(SimpleNamespace(name=name, parameters=parameters), arguments)
