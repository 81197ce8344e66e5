"""Feedback records as stage 10 reads them, and how they become training data.

One record per rated (or corrected, or undone) assistant turn::

    {"id": "turn-42", "created": 1764000000.0, "rating": 1 | -1 | 0,
     "prompt": [messages before the reply], "response": {"content": ..., "tool_call": {...}?},
     "correction": {"content": ...} | null, "undone": false}

- a thumb (rating +1/-1) becomes a KTO example (desirable / undesirable);
- a correction (the user said what the answer should have been) becomes a preference pair,
  correction over response;
- an undone turn without a correction counts as a thumbs-down.

The feedback store (``feedback/``, the agent's package) exports exactly these records; until its
read API is on this branch, ``read_feedback`` takes such an export as JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from trainer import TrainerError


def read_feedback(path: str | Path, since: float | None = None) -> list[dict]:
    """The records of a JSONL export newer than ``since`` (a UNIX time), oldest first."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TrainerError(f"{path}:{number} is not valid JSON ({exc.msg})", "fix or remove that line of the feedback export") from exc
        if not isinstance(record, dict) or "prompt" not in record or "response" not in record:
            raise TrainerError(f"{path}:{number} is not a feedback record", "each line needs prompt and response")
        if since is not None and float(record.get("created", 0)) <= since:
            continue
        records.append(record)
    records.sort(key=lambda r: float(r.get("created", 0)))
    return records


def is_signal(record: dict) -> bool:
    """Does this record say anything to learn from?"""
    return bool(record.get("rating")) or bool(record.get("correction")) or bool(record.get("undone"))


def to_training_records(records: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(preference pairs, labelled examples) in the stage-4 record shapes."""
    pairs, labelled = [], []
    for r in records:
        prompt, response = r["prompt"], r["response"]
        if r.get("correction"):
            pairs.append({"prompt": prompt, "chosen": r["correction"], "rejected": response, "source": "feedback",
                          "margin": 1.0, "feedback_id": r.get("id")})
            continue
        rating = r.get("rating") or (-1 if r.get("undone") else 0)
        if rating:
            labelled.append({"prompt": prompt, "completion": response, "label": rating > 0, "source": "feedback",
                             "feedback_id": r.get("id")})
    return pairs, labelled


def append_feedback(path: str | Path, records: Iterable[dict]) -> None:
    """Append records to a JSONL export (tests and manual imports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
