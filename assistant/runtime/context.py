"""What to do when a prompt is longer than the context window: cut from the left, keep the system prompt.

The policy, for a conversation that does not fit in ``budget`` tokens (the context window minus
the room reserved for the reply):

1. The system prompt (with the tool list) is always kept, and so is the newest message.
2. The oldest other messages are dropped, one turn at a time; an assistant tool call and the tool
   result that answers it are dropped together, so no result is left without its call.
3. If the system prompt and the newest message alone are still too long, the newest message is
   cut from the left (its end, usually the question, is kept).
4. If the system prompt alone takes more than half the budget, it is cut to its first half-budget
   tokens (the start of a system prompt carries the instructions).

A plain token prompt is simply cut from the left. Nothing here ever raises for a long prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainer.data.chat_format import Rendered, render


@dataclass
class FittedPrompt:
    ids: list[int]
    dropped_messages: int = 0  # whole messages left out (oldest first)
    cut_tokens: int = 0  # tokens cut from inside a message (or from a plain prompt)

    @property
    def truncated(self) -> bool:
        return bool(self.dropped_messages or self.cut_tokens)


def reply_budget(context_window: int, max_new_tokens: int) -> int:
    """Tokens left for the prompt: the window minus the reply's room, but at least half the window."""
    return max(context_window - max_new_tokens, context_window // 2, 1)


def fit_ids(ids: Sequence[int], budget: int) -> FittedPrompt:
    ids = list(ids)
    if len(ids) <= budget:
        return FittedPrompt(ids)
    return FittedPrompt(ids[len(ids) - budget :], cut_tokens=len(ids) - budget)


def _turns(messages: list[Mapping[str, Any]]) -> list[list[int]]:
    """Indexes of the non-system messages grouped so a tool call travels with its results."""
    groups: list[list[int]] = []
    for index, message in enumerate(messages):
        if message.get("role") == "tool" and groups and messages[groups[-1][-1]].get("role") in ("assistant", "tool") \
                and any(messages[i].get("tool_call") for i in groups[-1]):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def fit_conversation(messages: Sequence[Mapping[str, Any]], tokenizer, budget: int,
                     tools: Sequence[Mapping] | None = None) -> FittedPrompt:
    """Render ``messages`` with a generation prompt in at most ``budget`` tokens (see module doc)."""
    messages = list(messages)
    full = render(messages, tokenizer, tools=tools, add_generation_prompt=True)
    if len(full) <= budget:
        return FittedPrompt(full.ids)
    system = [m for m in messages[:1] if m.get("role") == "system"]
    rest = messages[len(system):]
    if not rest:  # only a (huge) system prompt: cut it and leave room for the reply's role token
        fitted = _cut_system(system, tokenizer, max(budget - 1, 1), tools, dropped=0)
        return FittedPrompt(fitted.ids + [tokenizer.token_to_id("<|assistant|>")], cut_tokens=fitted.cut_tokens)
    groups = _turns(rest)
    last_group = groups[-1]
    dropped = 0
    for start in range(1, len(groups)):  # drop the oldest groups first
        kept = [rest[i] for group in groups[start:] for i in group]
        dropped = sum(len(g) for g in groups[:start])
        attempt = render(system + kept, tokenizer, tools=tools, add_generation_prompt=True)
        if len(attempt) <= budget:
            return FittedPrompt(attempt.ids, dropped_messages=dropped)
    dropped = len(rest) - len(last_group)
    newest = [rest[i] for i in last_group][-1:]  # within the newest group, keep only its last message
    dropped += len(last_group) - 1
    head = render(system, tokenizer, tools=tools) if system or tools else Rendered([], [])
    if len(head) > budget // 2:
        fitted = _cut_system(system, tokenizer, budget // 2, tools, dropped)
        head = Rendered(fitted.ids, [0] * len(fitted.ids))
    tail = render(newest, tokenizer, add_generation_prompt=True)
    bos = len(getattr(tokenizer, "bos_ids", []) or [])
    tail_ids = tail.ids[bos:] if head.ids else tail.ids
    room = budget - len(head.ids)
    if len(tail_ids) <= room:
        return FittedPrompt(head.ids + tail_ids, dropped_messages=dropped)
    # keep the role token of the newest message, then the last tokens of its content and the prompt
    role, body = tail_ids[:1], tail_ids[1:]
    keep = max(room - 1, 0)
    cut = len(body) - keep
    return FittedPrompt(head.ids + role + (body[len(body) - keep :] if keep else []), dropped_messages=dropped, cut_tokens=cut)


def _cut_system(system, tokenizer, budget: int, tools, dropped: int) -> FittedPrompt:
    rendered = render(system, tokenizer, tools=tools)
    if len(rendered) <= budget:
        return FittedPrompt(rendered.ids, dropped_messages=dropped)
    end = tokenizer.token_to_id("<|end|>")
    ids = rendered.ids[: max(budget - 1, 1)] + ([end] if budget > 1 else [])
    return FittedPrompt(ids, dropped_messages=dropped, cut_tokens=len(rendered) - len(ids))
