"""Preference data on disk and as token ids.

Two record kinds, one JSON object per line:

- a pair: ``{"prompt": [messages], "chosen": reply, "rejected": reply, "source": str, "margin": float?}``
- a labelled example (KTO, thumbs): ``{"prompt": [messages], "completion": reply, "label": true|false, "source": str}``

A reply is an assistant message without the role: ``{"content": str, "tool_call": {...}?}``.
Messages use the one chat format (``trainer.data.chat_format``); the response mask covers the
assistant turn exactly as supervised training's loss mask does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_text
from trainer import TrainerError
from trainer.data.chat_format import render

PAIRS = "rlhf_pairs"
LABELLED = "rlhf_kto"


@dataclass
class Encoded:
    ids: list[int]
    mask: list[int]


def assistant_message(reply: Mapping[str, Any]) -> dict:
    message = {"role": "assistant", "content": reply.get("content", "")}
    if reply.get("tool_call"):
        message["tool_call"] = reply["tool_call"]
    return message


def _render_raw_call(prompt, reply, tokenizer) -> tuple[list[int], list[int]]:
    """A reply whose tool call is malformed text (``tool_call_raw``): the call token, the raw text, end."""
    from trainer.data.chat_format import END, TOOL_CALL

    head = render(list(prompt), tokenizer, add_generation_prompt=True)
    body = tokenizer.encode(reply.get("content", "")) if reply.get("content") else []
    body += [tokenizer.token_to_id(TOOL_CALL)] + tokenizer.encode(reply["tool_call_raw"]) + [tokenizer.token_to_id(END)]
    return head.ids + body, [0] * len(head.ids) + [1] * len(body)


def encode(prompt: Sequence[Mapping[str, Any]], reply: Mapping[str, Any], tokenizer, max_len: int) -> Encoded:
    """Token ids of prompt + reply with the reply's mask; the prompt is cut from the left to fit."""
    if reply.get("tool_call_raw") is not None:
        ids, mask = _render_raw_call(prompt, reply, tokenizer)
    else:
        full = render([*prompt, assistant_message(reply)], tokenizer)
        ids, mask = full.ids, full.mask
    if len(ids) > max_len:
        first = next((i for i, m in enumerate(mask) if m), len(ids))
        response = len(ids) - first
        keep_prompt = max(1, max_len - response)
        start = max(0, first - keep_prompt)
        ids, mask = ids[start:][:max_len], mask[start:][:max_len]
    return Encoded(ids, mask)


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(Path(path), "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"preference data not found: {path}", "run 'assistant data prepare --stage rlhf' first")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TrainerError(f"{path}:{number} is not valid JSON ({exc.msg})", "prepare the data again") from exc
        if not isinstance(record, dict) or "prompt" not in record:
            raise TrainerError(f"{path}:{number} is not a preference record", "prepare the data again")
        records.append(record)
    return records


def is_pair(record: Mapping[str, Any]) -> bool:
    return "chosen" in record and "rejected" in record


def split(records: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded train/validation split that keeps at least one record on each side when it can."""
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    n_val = int(round(len(shuffled) * val_fraction))
    if len(shuffled) >= 2:
        n_val = min(max(1, n_val), len(shuffled) - 1)
    return shuffled[n_val:], shuffled[:n_val]


def pairs_to_labelled(pairs: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Each pair gives one desirable and one undesirable example (KTO learns from either kind)."""
    out = []
    for p in pairs:
        out.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True, "source": p.get("source", "")})
        out.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False, "source": p.get("source", "")})
    return out


def load_split(data_dir: str | Path, kind: str, part: str) -> list[dict]:
    path = Path(data_dir) / f"{kind}_{part}.jsonl"
    return read_jsonl(path) if path.exists() or part == "train" else []
