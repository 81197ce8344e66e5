"""apply_patch: apply a unified diff to the real project, only after the user approves it.

The patch is checked completely in memory first (every hunk must match, with some line drift
allowed), so the user is only asked about a patch that applies, and a failing hunk is reported
with what was expected and where. Then: approval, backup, atomic writes (see ``backup``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.tools.backup import Change
from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure
from sandbox.tools.paths import PathProblem, relative
from sandbox.tools.write_file import approve_and_write, checked_target, unified_diff

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")

PARAMETERS = {
    "type": "object",
    "properties": {
        "patch": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024 * 1024,
            "description": "A unified diff (as from `diff -u` or `git diff`), paths relative to the project root.",
        }
    },
    "required": ["patch"],
    "additionalProperties": False,
}


class PatchProblem(ValueError):
    pass


@dataclass
class Hunk:
    old_start: int
    lines: list[tuple[str, str]] = field(default_factory=list)  # (' '|'-'|'+', text without newline)
    no_newline_old: bool = False
    no_newline_new: bool = False


@dataclass
class FilePatch:
    old_path: str | None  # None: new file
    new_path: str | None  # None: delete
    hunks: list[Hunk] = field(default_factory=list)


def _strip_prefix(name: str) -> str | None:
    name = name.split("\t")[0].strip()
    if name == "/dev/null":
        return None
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def parse(patch: str) -> list[FilePatch]:
    files: list[FilePatch] = []
    lines = patch.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FilePatch(_strip_prefix(line[4:]), _strip_prefix(lines[i + 1][4:]))
            files.append(current)
            i += 2
            while i < len(lines) and lines[i].startswith("@@"):
                match = HUNK.match(lines[i])
                if not match:
                    raise PatchProblem(f"bad hunk header: {lines[i]!r}")
                old_len = int(match.group(2) or 1)
                new_len = int(match.group(4) or 1)
                hunk = Hunk(old_start=int(match.group(1)))
                current.hunks.append(hunk)
                i += 1
                seen_old = seen_new = 0
                while i < len(lines) and (seen_old < old_len or seen_new < new_len or lines[i].startswith("\\")):
                    body = lines[i]
                    if body.startswith("\\"):
                        last = hunk.lines[-1][0] if hunk.lines else " "
                        if last in " -":
                            hunk.no_newline_old = True
                        if last in " +":
                            hunk.no_newline_new = True
                        i += 1
                        continue
                    tag, text = (body[:1] or " "), body[1:]
                    if tag not in " -+":
                        raise PatchProblem(f"unexpected line in hunk: {body!r}")
                    hunk.lines.append((tag, text))
                    seen_old += tag in " -"
                    seen_new += tag in " +"
                    i += 1
            if not current.hunks:
                raise PatchProblem(f"no hunks for {current.new_path or current.old_path}")
            continue
        i += 1
    if not files:
        raise PatchProblem("no file headers ('--- a/path' / '+++ b/path') found; is this a unified diff?")
    return files


def _find(haystack: list[str], needle: list[str], around: int) -> int | None:
    """Where ``needle`` occurs in ``haystack``, nearest to ``around``."""
    if not needle:
        return min(max(around, 0), len(haystack))
    for distance in range(len(haystack) + 1):
        for start in (around - distance, around + distance):
            if 0 <= start <= len(haystack) - len(needle) and haystack[start : start + len(needle)] == needle:
                return start
        if around - distance < 0 and around + distance > len(haystack):
            break
    return None


def apply_to_text(old: str, file_patch: FilePatch, name: str) -> str:
    newline = "\r\n" if "\r\n" in old else "\n"
    lines = old.splitlines()
    ends_with_newline = old.endswith(("\n", "\r"))
    offset = 0
    for number, hunk in enumerate(file_patch.hunks, 1):
        before = [text for tag, text in hunk.lines if tag in " -"]
        after = [text for tag, text in hunk.lines if tag in " +"]
        expected = hunk.old_start - 1 + offset if before else hunk.old_start + offset
        at = _find(lines, before, expected)
        if at is None:
            stripped = [line.rstrip() for line in lines]
            at = _find(stripped, [text.rstrip() for text in before], expected)
        if at is None:
            first = before[0] if before else ""
            raise PatchProblem(f"hunk {number} of {name} does not match the file (expected near line {hunk.old_start}: {first!r})")
        lines[at : at + len(before)] = after
        offset = at - (hunk.old_start - 1) + len(after) - len(before)
        if at + len(after) == len(lines):
            ends_with_newline = not hunk.no_newline_new
    text = newline.join(lines)
    if lines and ends_with_newline:
        text += newline
    return text


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    try:
        file_patches = parse(args["patch"])
        changes: list[Change] = []
        diffs: list[str] = []
        for file_patch in file_patches:
            name = file_patch.new_path or file_patch.old_path or ""
            path = checked_target(ctx, name)
            rel = relative(ctx.project, path)
            exists = path.is_file()
            if file_patch.old_path is None and exists:
                raise PatchProblem(f"{rel} already exists but the patch creates it")
            if file_patch.old_path is not None and not exists:
                raise PatchProblem(f"{rel} does not exist")
            old_bytes = path.read_bytes() if exists else None
            if old_bytes is not None and b"\0" in old_bytes[:8192]:
                raise PatchProblem(f"{rel} is a binary file")
            old_text = old_bytes.decode("utf-8", "replace") if old_bytes is not None else ""
            if file_patch.new_path is None:
                new_bytes = None
            else:
                new_bytes = apply_to_text(old_text, file_patch, rel).encode("utf-8")
            changes.append(Change(path, new_bytes))
            diffs.append(unified_diff(rel, old_bytes, new_bytes))
    except (PatchProblem, PathProblem) as exc:
        return failure("apply_patch", f"patch not applied: {exc}")
    names = ", ".join(relative(ctx.project, c.path) for c in changes)
    return approve_and_write(ctx, "apply_patch", changes, f"patch {names}", "".join(diffs))


TOOL = Tool(
    name="apply_patch",
    description=(
        "Apply a unified diff to files of the user's project (create, change or delete files). "
        "Checked first; the user sees the diff and must approve; a backup allows undo."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.WRITE,
    run=run,
)
