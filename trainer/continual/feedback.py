"""Feedback as stage 10 reads it, and how it becomes training data.

The source is the feedback store (``feedback.FeedbackStore``, a SQLite file) or a JSONL export of
it (``assistant feedback export``). Its records (kind rating | undone_turn | rejected_approval |
failed_tool, value +1/-1, the prompt ``messages`` the model saw, its ``response``) become::

    {"id", "created", "rating": +1 | -1, "prompt": [messages], "response": {"content": ...},
     "correction": {"content": ...} | None, "undone": bool}

- a thumb becomes a KTO example (desirable / undesirable); the newest rating of a turn wins;
- an undone turn and a rejected tool approval count as a thumbs-down;
- a failed tool call is not counted: the failure may be the user's code, not the model's answer;
- where the same prompt got a thumbs-up answer and a thumbs-down (or undone) one, or an explicit
  ``correction``, the better answer is known: that is a preference pair (DPO rides along KTO).
JSONL lines may also be in the normalised shape above (hand-written or imported data).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from trainer import TrainerError

IMPLICIT_NEGATIVE = ("undone_turn", "rejected_approval")


def from_store_record(r: dict) -> dict | None:
    """A ``FeedbackRecord`` (as a dict) in the normalised shape, or None when it carries no signal here."""
    kind = r.get("kind")
    if kind == "rating":
        rating = 1 if int(r.get("value", 0)) > 0 else -1
    elif kind in IMPLICIT_NEGATIVE:
        rating = -1
    else:
        return None
    return {"id": f"{r.get('session_id', '')}/{r.get('turn_id', '')}" if r.get("turn_id") else str(r.get("id")),
            "created": float(r.get("created", 0)), "rating": rating, "prompt": list(r.get("messages") or []),
            "response": {"content": r.get("response") or ""}, "correction": None, "undone": kind == "undone_turn",
            "kind": kind, "reason": r.get("reason")}


def _normalise(raw: dict, where: str) -> dict | None:
    if "kind" in raw and "messages" in raw:
        return from_store_record(raw)
    if not isinstance(raw, dict) or "prompt" not in raw or "response" not in raw:
        raise TrainerError(f"{where} is not a feedback record", "export it with 'assistant feedback export --format jsonl'")
    return raw


def read_feedback(path: str | Path, since: float | None = None) -> list[dict]:
    """Normalised records newer than ``since`` (a UNIX time), oldest first, one per rated turn
    (the newest signal of a turn wins). ``path``: the store's SQLite file or a JSONL export."""
    path = Path(path)
    if not path.exists():
        return []
    raw: list[tuple[dict, str]] = []
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        from feedback import FeedbackStore

        with FeedbackStore(path, readonly=True) as store:
            raw = [(rec.to_dict(), f"{path}#{rec.id}") for rec in store.since(float(since or 0.0))]
    else:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw.append((json.loads(line), f"{path}:{number}"))
            except ValueError as exc:
                raise TrainerError(f"{path}:{number} is not valid JSON ({exc.msg})",
                                   "fix or remove that line of the feedback export") from exc
    latest: dict[str, dict] = {}
    for item, where in raw:
        record = _normalise(item, where)
        if record is None or (since is not None and float(record.get("created", 0)) <= since):
            continue
        key = str(record.get("id") or where)
        if key not in latest or float(record.get("created", 0)) >= float(latest[key].get("created", 0)):
            latest[key] = record
    return sorted(latest.values(), key=lambda r: float(r.get("created", 0)))


def is_signal(record: dict) -> bool:
    """Does this record say anything to learn from?"""
    return bool(record.get("rating")) or bool(record.get("correction")) or bool(record.get("undone"))


def to_training_records(records: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(preference pairs, labelled examples) in the stage-4 record shapes."""
    pairs, labelled = [], []
    by_prompt: dict[str, dict[int, list[dict]]] = {}
    for r in records:
        prompt, response = r["prompt"], r["response"]
        if r.get("correction"):
            pairs.append({"prompt": prompt, "chosen": r["correction"], "rejected": response, "source": "feedback",
                          "margin": 1.0, "feedback_id": r.get("id")})
            continue
        rating = r.get("rating") or (-1 if r.get("undone") else 0)
        if not rating:
            continue
        labelled.append({"prompt": prompt, "completion": response, "label": rating > 0, "source": "feedback",
                         "feedback_id": r.get("id")})
        key = json.dumps(prompt, sort_keys=True)
        by_prompt.setdefault(key, {}).setdefault(1 if rating > 0 else -1, []).append(r)
    for groups in by_prompt.values():  # the same question answered well and badly: the better answer is known
        for good in groups.get(1, []):
            for bad in groups.get(-1, []):
                if good["response"] != bad["response"]:
                    pairs.append({"prompt": good["prompt"], "chosen": good["response"], "rejected": bad["response"],
                                  "source": "feedback", "margin": 1.0, "feedback_id": f"{good.get('id')}>{bad.get('id')}"})
    return pairs, labelled


def append_feedback(path: str | Path, records: Iterable[dict]) -> None:
    """Append records to a JSONL export (tests and manual imports)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
