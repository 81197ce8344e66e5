"""Sessions persisted in SQLite (WAL) for ``assistant --resume`` and the sessions list.

One database for all projects, ``$XDG_DATA_HOME/assistant/sessions.db``: a ``sessions`` row per
conversation (project, title, model, times) and one ``turns`` row per turn holding the messages
the turn added (user message, assistant replies, tool calls and results) and what the loop needs
to rate or undo it later. Every write is one transaction, so a kill leaves the last good state.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.agent.errors import AgentError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    stop_reason TEXT,
    messages TEXT NOT NULL,   -- JSON list: what the turn added to the conversation
    record TEXT NOT NULL      -- JSON: prompt, response, tool calls, shadow commits, files changed
);
CREATE INDEX IF NOT EXISTS turns_by_session ON turns(session_id, seq);
CREATE INDEX IF NOT EXISTS sessions_by_project ON sessions(project, updated);
"""


def default_sessions_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "assistant" / "sessions.db"


@dataclass
class SessionInfo:
    id: str
    project: str
    title: str
    model: str
    created: float
    updated: float
    turns: int = 0


@dataclass
class StoredTurn:
    id: str
    seq: int
    messages: list[dict[str, Any]]
    record: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode that waits (not fails) while another process writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SessionStore:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path else default_sessions_path()
        self._lock = threading.RLock()  # one connection shared by the TUI's threads
        try:
            self.conn = connect(self.path)
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AgentError(f"sessions database {self.path} is from a newer version (schema {version})",
                                 "upgrade the assistant")
            with self.transaction():
                for statement in _statements(_SCHEMA):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise AgentError(f"cannot open the sessions database {self.path}: {exc}",
                             "move the file away to start a new one") from None

    def transaction(self):
        return _Transaction(self.conn, self._lock)

    def create(self, project: Path, model: str = "", title: str = "") -> str:
        session_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        now = time.time()
        with self.transaction():
            self.conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                              (session_id, str(Path(project).resolve()), title, model, now, now))
        return session_id

    def save_turn(self, session_id: str, turn: StoredTurn, title: str | None = None) -> None:
        now = time.time()
        with self.transaction():
            self.conn.execute(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET finished=excluded.finished,"
                " stop_reason=excluded.stop_reason, messages=excluded.messages, record=excluded.record",
                (turn.id, session_id, turn.seq, turn.record.get("started", now), now, turn.stop_reason,
                 json.dumps(turn.messages, ensure_ascii=False), json.dumps(turn.record, ensure_ascii=False)))
            self.conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
            if title:
                self.conn.execute("UPDATE sessions SET title = ? WHERE id = ? AND title = ''", (title[:80], session_id))

    def update_record(self, turn_id: str, record: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute("UPDATE turns SET record = ? WHERE id = ?", (json.dumps(record, ensure_ascii=False), turn_id))

    def turns(self, session_id: str) -> list[StoredTurn]:
        with self._lock:
            rows = self.conn.execute("SELECT id, seq, messages, record, stop_reason FROM turns WHERE session_id = ?"
                                     " ORDER BY seq", (session_id,)).fetchall()
        return [StoredTurn(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4]) for r in rows]

    def get(self, session_id: str) -> SessionInfo:
        with self._lock:
            row = self.conn.execute(
                "SELECT s.id, s.project, s.title, s.model, s.created, s.updated, COUNT(t.id) FROM sessions s"
                " LEFT JOIN turns t ON t.session_id = s.id WHERE s.id = ? GROUP BY s.id", (session_id,)).fetchone()
        if row is None:
            raise AgentError(f"no session '{session_id}'", "list them with 'assistant sessions'")
        return SessionInfo(*row)

    def list(self, project: Path | None = None, limit: int = 50) -> list[SessionInfo]:
        """Sessions, most recently updated first (only ``project``'s when given)."""
        where, params = ("WHERE s.project = ?", [str(Path(project).resolve())]) if project else ("", [])
        with self._lock:
            rows = self.conn.execute(
                "SELECT s.id, s.project, s.title, s.model, s.created, s.updated, COUNT(t.id) FROM sessions s"
                f" LEFT JOIN turns t ON t.session_id = s.id {where} GROUP BY s.id ORDER BY s.updated DESC LIMIT ?",
                (*params, limit)).fetchall()
        return [SessionInfo(*r) for r in rows]

    def latest(self, project: Path) -> SessionInfo | None:
        found = self.list(project, limit=1)
        return found[0] if found else None

    def delete(self, session_id: str) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
            self.conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def close(self) -> None:
        with self._lock:
            self.conn.close()


def _statements(script: str) -> list[str]:
    out, buf = [], []
    for line in script.splitlines():
        line = line.split("--", 1)[0]
        buf.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(buf))
            buf = []
    return [s for s in out if s.strip()]


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): the write lock is taken up front,
    so two processes never interleave inside one transaction."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self.conn = conn
        self.lock = lock

    def __enter__(self):
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type, *_):
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
        return False
