"""The prompt's history: what the user sent, newest last, kept across sessions (↑/↓ walk it).

Stored as JSON lines in ``$XDG_DATA_HOME/assistant/prompt_history.jsonl`` (multi-line prompts
stay whole), bounded to ``LIMIT`` entries. Plain Python; the prompt widget drives it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LIMIT = 500


def default_history_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "assistant" / "prompt_history.jsonl"


class PromptHistory:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: list[str] = []
        self._cursor: int | None = None  # index into entries while walking, None when not
        self._draft = ""
        if path is not None and path.exists():
            try:
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        value = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(value, str):
                        self.entries.append(value)
            except OSError:
                pass
            if len(self.entries) > 2 * LIMIT:  # compact the file now and then
                self.entries = self.entries[-LIMIT:]
                try:
                    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries),
                                    encoding="utf-8")
                except OSError:
                    pass
            self.entries = self.entries[-LIMIT:]

    def add(self, text: str) -> None:
        self._cursor = None
        if not text.strip() or (self.entries and self.entries[-1] == text):
            return
        self.entries.append(text)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(text, ensure_ascii=False) + "\n")
        except OSError:
            pass  # history is a convenience; never fail a prompt over it

    def previous(self, current: str) -> str | None:
        """The entry before the one shown (``current`` is kept as a draft to come back to)."""
        if not self.entries:
            return None
        if self._cursor is None:
            self._draft = current
            self._cursor = len(self.entries)
        if self._cursor == 0:
            return None
        self._cursor -= 1
        return self.entries[self._cursor]

    def next(self) -> str | None:
        """The entry after the one shown; past the newest, the draft again."""
        if self._cursor is None:
            return None
        self._cursor += 1
        if self._cursor >= len(self.entries):
            self._cursor = None
            return self._draft
        return self.entries[self._cursor]

    def reset(self) -> None:
        self._cursor = None
