"""Plan mode helpers: read the numbered steps out of the model's plan."""

from __future__ import annotations

import re

_STEP = re.compile(r"^\s*(?:step\s*)?(\d+)\s*[.):-]\s+(.+?)\s*$", re.IGNORECASE)


def parse_plan(text: str) -> list[str]:
    """The plan's steps in order: lines like ``1. do x`` / ``2) do y`` (continuation lines join the step)."""
    steps: list[str] = []
    for line in text.splitlines():
        match = _STEP.match(line)
        if match:
            steps.append(match.group(2))
        elif steps and line.strip() and line[:1].isspace():
            steps[-1] += " " + line.strip()
    return steps
