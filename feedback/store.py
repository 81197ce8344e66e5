"""The feedback database: SQLite in WAL mode, a versioned schema, one transaction per record.

Every record keeps what training on it later needs: the rendered prompt messages the model saw,
its response, the turn's tool calls and results, the model/checkpoint id, timestamps, the session
and turn ids. Secrets are redacted (``feedback.redact``) before anything is written.

Kinds: ``rating`` (explicit thumbs up +1 / down -1, optional reason) and the implicit signals
``rejected_approval``, ``undone_turn``, ``failed_tool`` (value -1). Records are append-only: a
changed mind is a newer ``rating`` record for the same turn (``latest_ratings`` keeps the newest).

Concurrency: any number of processes may write at once (two TUIs, a headless agent) while a
training job reads. Writers take the write lock up front (``BEGIN IMMEDIATE``) and wait for it
(``busy_timeout``), retrying on a busy database, so no record is lost; readers never block writers.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from feedback.redact import redact, redact_obj

KINDS = ("rating", "rejected_approval", "undone_turn", "failed_tool")
SCHEMA_VERSION = 1
# Each version's statements; opening an older database applies the missing ones in one transaction.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            kind TEXT NOT NULL,
            value INTEGER NOT NULL CHECK (value IN (-1, 1)),
            reason TEXT,
            session_id TEXT NOT NULL DEFAULT '',
            turn_id TEXT NOT NULL DEFAULT '',
            project TEXT NOT NULL DEFAULT '',
            model_id TEXT NOT NULL DEFAULT '',
            messages TEXT NOT NULL,
            response TEXT NOT NULL,
            tool_calls TEXT NOT NULL,
            extra TEXT NOT NULL
        )""",
        "CREATE INDEX feedback_created ON feedback(created)",
        "CREATE INDEX feedback_turn ON feedback(turn_id, kind)",
    ],
}


def default_feedback_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "assistant" / "feedback.db"


@dataclass
class FeedbackRecord:
    """One stored record. ``messages`` are the rendered prompt messages (chat-format dicts) the model
    saw for ``response``; ``tool_calls`` the turn's calls with their results."""

    id: int
    uid: str
    created: float
    kind: str
    value: int
    reason: str | None
    session_id: str
    turn_id: str
    project: str
    model_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    response: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_iso"] = datetime.fromtimestamp(self.created, timezone.utc).isoformat()
        return out


_COLUMNS = "id, uid, created, kind, value, reason, session_id, turn_id, project, model_id, messages, response, tool_calls, extra"


def _record(row: tuple) -> FeedbackRecord:
    values = list(row)
    for i in (10, 12, 13):
        values[i] = json.loads(values[i])
    return FeedbackRecord(*values)


class FeedbackStore:
    """The feedback database (default ``$XDG_DATA_HOME/assistant/feedback.db``). Thread-safe."""

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool = False) -> None:
        from feedback import FeedbackError

        self.path = Path(path) if path else default_feedback_path()
        self._lock = threading.Lock()
        try:
            if readonly:
                if not self.path.exists():
                    raise FeedbackError(f"no feedback database at {self.path}", "rate a reply in the assistant first")
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None,
                                            check_same_thread=False)
                self.conn.execute("PRAGMA busy_timeout = 30000")
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
                self.conn.execute("PRAGMA busy_timeout = 30000")
                self._retry(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise FeedbackError(f"cannot open the feedback database {self.path}: {exc}",
                                "move the file away to start a new one") from None
        if version > SCHEMA_VERSION:
            raise FeedbackError(f"the feedback database {self.path} has schema {version}, newer than this version ({SCHEMA_VERSION})",
                                "upgrade the assistant")

    # ---- writing --------------------------------------------------------------------------------

    def _retry(self, action, attempts: int = 50):
        for attempt in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))
        return None

    def _transaction(self, statements: list[tuple[str, tuple]]) -> list[sqlite3.Cursor]:
        def run() -> list[sqlite3.Cursor]:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                cursors = [self.conn.execute(sql, params) for sql, params in statements]
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return cursors

        with self._lock:
            return self._retry(run)

    def _migrate(self) -> None:
        def run() -> None:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                for target in sorted(v for v in MIGRATIONS if v > version):
                    for sql in MIGRATIONS[target]:
                        self.conn.execute(sql)
                    self.conn.execute(f"PRAGMA user_version = {target}")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

        with self._lock:
            self._retry(run)

    def add(self, *, kind: str, value: int = -1, reason: str | None = None, session_id: str = "", turn_id: str = "",
            project: str = "", model_id: str = "", messages: list[dict[str, Any]] | None = None, response: str = "",
            tool_calls: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None,
            created: float | None = None) -> int:
        """Store one record (secrets redacted) in its own transaction; returns its id."""
        from feedback import FeedbackError

        if kind not in KINDS:
            raise FeedbackError(f"unknown feedback kind '{kind}'", f"use one of {', '.join(KINDS)}")
        if value not in (1, -1):
            raise FeedbackError(f"feedback value must be +1 or -1, not {value!r}")
        row = (uuid.uuid4().hex, created if created is not None else time.time(), kind, int(value),
               redact(reason) if reason else None, session_id, turn_id, project, model_id,
               json.dumps(redact_obj(messages or []), ensure_ascii=False, default=str),
               redact(response or ""), json.dumps(redact_obj(tool_calls or []), ensure_ascii=False, default=str),
               json.dumps(redact_obj(extra or {}), ensure_ascii=False, default=str))
        cursor, = self._transaction([(f"INSERT INTO feedback ({_COLUMNS.removeprefix('id, ')}) VALUES "
                                      f"({', '.join('?' * 13)})", row)])
        return int(cursor.lastrowid)

    # ---- reading (the API retraining uses) -------------------------------------------------------

    def since(self, cursor: int | float | datetime = 0, *, kinds: tuple[str, ...] | None = None,
              limit: int | None = None) -> list[FeedbackRecord]:
        """Records after ``cursor``, oldest first: an ``int`` is a record id (``since(last.id)``
        continues where a previous read stopped), a ``float`` a Unix timestamp, a ``datetime`` a time."""
        return list(self.iter_since(cursor, kinds=kinds, limit=limit))

    def iter_since(self, cursor: int | float | datetime = 0, *, kinds: tuple[str, ...] | None = None,
                   limit: int | None = None) -> Iterator[FeedbackRecord]:
        if isinstance(cursor, datetime):
            cursor = cursor.timestamp()
        if isinstance(cursor, bool) or not isinstance(cursor, (int, float)):
            from feedback import FeedbackError

            raise FeedbackError(f"'since' takes a record id, a Unix time or a datetime, not {cursor!r}")
        where, params = ("id > ?", [cursor]) if isinstance(cursor, int) else ("created > ?", [cursor])
        if kinds:
            where += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += list(kinds)
        sql = f"SELECT {_COLUMNS} FROM feedback WHERE {where} ORDER BY id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        for row in rows:
            yield _record(row)

    def get(self, record_id: int) -> FeedbackRecord | None:
        with self._lock:
            row = self.conn.execute(f"SELECT {_COLUMNS} FROM feedback WHERE id = ?", (record_id,)).fetchone()
        return _record(row) if row else None

    def latest_ratings(self) -> list[FeedbackRecord]:
        """The newest explicit rating of each rated turn."""
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM feedback WHERE id IN (SELECT MAX(id) FROM feedback WHERE kind = 'rating'"
                " GROUP BY session_id, turn_id) ORDER BY id").fetchall()
        return [_record(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def stats(self) -> dict[str, Any]:
        """Counts by kind, thumbs up/down (newest rating per turn) and by model."""
        with self._lock:
            by_kind = dict(self.conn.execute("SELECT kind, COUNT(*) FROM feedback GROUP BY kind").fetchall())
            by_model = {m or "unknown": n for m, n in self.conn.execute(
                "SELECT model_id, COUNT(*) FROM feedback GROUP BY model_id ORDER BY COUNT(*) DESC").fetchall()}
            span = self.conn.execute("SELECT MIN(created), MAX(created) FROM feedback").fetchone()
        ratings = self.latest_ratings()
        return {"total": sum(by_kind.values()), "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
                "thumbs_up": sum(1 for r in ratings if r.value > 0), "thumbs_down": sum(1 for r in ratings if r.value < 0),
                "by_model": by_model, "first": span[0], "last": span[1]}

    def export_jsonl(self, out: IO[str], cursor: int | float | datetime = 0, kinds: tuple[str, ...] | None = None) -> int:
        """Write records after ``cursor`` as JSON lines; returns how many."""
        n = 0
        for record in self.iter_since(cursor, kinds=kinds):
            out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            n += 1
        return n

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
