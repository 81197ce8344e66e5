"""Episodic memory: short facts the user confirmed about a project (e.g. how to run its tests).

One Markdown file per project, ``<project>/.assistant/memory.md``, one fact per ``- `` line, which
the user can read and edit; it is injected into the system prompt. Writes are atomic.
"""

from __future__ import annotations

from pathlib import Path

from common.atomic import atomic_write_text

MEMORY_FILE = Path(".assistant") / "memory.md"
HEADER = "# Project memory\n\nFacts the user confirmed; the assistant reads them at the start of every turn.\n\n"


class Memory:
    def __init__(self, project: Path) -> None:
        self.path = Path(project) / MEMORY_FILE

    def facts(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return []
        return [line[2:].strip() for line in text.splitlines() if line.startswith("- ") and line[2:].strip()]

    def add(self, fact: str) -> list[str]:
        fact = " ".join(fact.split())
        if not fact:
            return self.facts()
        facts = [f for f in self.facts() if f != fact] + [fact]
        self._write(facts)
        return facts

    def remove(self, index: int) -> list[str]:
        """Forget fact ``index`` (1-based, as listed)."""
        facts = self.facts()
        if 1 <= index <= len(facts):
            del facts[index - 1]
            self._write(facts)
        return facts

    def _write(self, facts: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, HEADER + "".join(f"- {fact}\n" for fact in facts))
