"""Tool-call metrics on the held-out conversations of stage 3 (never trained on).

For each conversation the model continues two prefixes with greedy decoding:
- the prefix before the first assistant turn: the expected tool call (or, for no-tool requests, a
  plain answer) is compared with what the model writes;
- the prefix before the final answer (the real tool results in context): the answer must state
  the result's key fact(s).

Metrics: valid call syntax (of the replies that attempt a call: one JSON object, a known tool,
schema-valid arguments), right tool (of the turns that expect a call; for no-tool requests,
"right" means answering without a call), exact arguments, partial arguments (share of expected
argument values matched), and key fact stated in the final answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _generate(loaded, messages: list[dict], tools: list[dict], max_new_tokens: int,
              decoding: dict[str, float] | None = None) -> tuple[str, bool]:
    from assistant.runtime import Finished, GenerationConfig, stream_chat

    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, **(decoding or {}))
    for event in stream_chat(loaded, messages, config, tools=tools):
        if isinstance(event, Finished):
            return event.text, event.complete
    return "", False


def partial_match(expected: dict, got: dict) -> float:
    """Share of the expected arguments whose value the model reproduced exactly (1.0 when none expected)."""
    if not expected:
        return 1.0 if not got else 0.5
    return sum(1 for k, v in expected.items() if got.get(k) == v) / len(expected)


def states_facts(answer: str, facts: list[str]) -> bool:
    text = " ".join(answer.lower().split())
    return all(" ".join(f.lower().split()) in text for f in facts)


def score_call(expected_call: dict | None, reply) -> dict:
    """One first-turn comparison. ``reply`` is a parse_reply result."""
    from trainer.data.chat_format import ToolCall, ToolCallError

    attempted = isinstance(reply, (ToolCall, ToolCallError))
    valid = isinstance(reply, ToolCall)
    if expected_call is None:
        return {"expects_call": False, "attempted": attempted, "valid": valid, "right_tool": not attempted,
                "exact_args": None, "partial_args": None}
    right = valid and reply.name == expected_call["name"]
    args = reply.arguments if valid else {}
    return {"expects_call": True, "attempted": attempted, "valid": valid, "right_tool": right,
            "exact_args": right and args == expected_call.get("arguments", {}),
            "partial_args": partial_match(expected_call.get("arguments", {}), args) if right else 0.0}


def evaluate_heldout(loaded, examples: list[dict], limit: int | None = None, max_new_tokens: int = 160,
                     log: Callable[[str], None] = lambda s: None, decoding: dict[str, float] | None = None) -> dict[str, Any]:
    from sandbox.tools import tool_schemas
    from trainer.data.chat_format import FinalAnswer, parse_reply

    tools = tool_schemas()
    chosen = examples[: limit or None]
    rows = []
    for number, example in enumerate(chosen, 1):
        messages = example["messages"]
        first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        text, complete = _generate(loaded, messages[:first], tools, max_new_tokens, decoding)
        row = {"id": example["id"], "family": example["family"],
               **score_call(messages[first].get("tool_call"), parse_reply(text, tools, complete))}
        row["reply"] = text[:300]
        last = len(messages) - 1
        if example.get("key_facts") and last != first and messages[last]["role"] == "assistant":
            answer, complete = _generate(loaded, messages[:last], tools, max_new_tokens, decoding)
            parsed = parse_reply(answer, tools, complete)
            row["fact_stated"] = isinstance(parsed, FinalAnswer) and states_facts(parsed.content, example["key_facts"])
            row["answer"] = answer[:300]
        rows.append(row)
        if number % 25 == 0:
            log(f"  held-out {number}/{len(chosen)}")
    return summarize(rows)


def summarize(rows: list[dict]) -> dict[str, Any]:
    def rate(values: list) -> float | None:
        return sum(values) / len(values) if values else None

    attempts = [r for r in rows if r["attempted"]]
    expecting = [r for r in rows if r["expects_call"]]
    facts = [r["fact_stated"] for r in rows if "fact_stated" in r]
    return {
        "examples": len(rows),
        "valid_syntax": rate([r["valid"] for r in attempts]),
        "call_attempt_rate": rate([r["attempted"] for r in expecting]),
        "right_tool": rate([r["right_tool"] for r in rows]),
        "right_tool_when_call_expected": rate([r["right_tool"] for r in expecting]),
        "no_tool_when_none_expected": rate([r["right_tool"] for r in rows if not r["expects_call"]]),
        "exact_args": rate([r["exact_args"] for r in expecting]),
        "partial_args": rate([r["partial_args"] for r in expecting]),
        "key_fact_stated": rate(facts),
        "rows": rows,
    }
