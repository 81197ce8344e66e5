"""Retraining requests: ``/retrain`` in the TUI queues one; the retrain job (``assistant retrain``) takes it.

A request is one JSON file in ``$XDG_DATA_HOME/assistant/retrain/queue/`` (default
``~/.local/share/assistant/retrain/queue/``), named ``<UTC time, to the nanosecond>-<id>.json`` so a
sorted listing is the queue in order, and written atomically (a reader never sees half a request)::

    {"version": 1, "id": "...", "requested_at": "2026-11-24T04:01:02Z", "project": "/path",
     "model": "/path/model.pth", "session_id": "...", "source": "tui", "note": ""}

The job claims a request by renaming it into ``taken/`` (a rename is atomic, so two jobs never take
the same one) and deletes or archives it when done. Nothing here imports Textual or torch.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_text

VERSION = 1


def queue_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "assistant" / "retrain" / "queue"


def request_retrain(project: str | os.PathLike, model: str | os.PathLike | None = None,
                    session_id: str | None = None, source: str = "tui", note: str = "") -> Path:
    """Queue one retraining request and return its file."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1e9)) + f".{now % 10**9:09d}Z"
    request_id = uuid.uuid4().hex[:12]
    record = {"version": VERSION, "id": request_id,
              "requested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "project": str(Path(project).resolve()), "model": str(model) if model else None,
              "session_id": session_id, "source": source, "note": note}
    path = queue_dir() / f"{stamp}-{request_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def pending() -> list[dict[str, Any]]:
    """The queued requests, oldest first (unreadable files are skipped, never fatal)."""
    folder = queue_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        record["path"] = str(path)
        out.append(record)
    return out


def claim(request: dict[str, Any]) -> Path | None:
    """Take ``request`` for a run (move it into ``taken/``); None when another job took it first."""
    source = Path(request["path"])
    taken = source.parent / "taken"
    taken.mkdir(exist_ok=True)
    target = taken / source.name
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None
    return target
