"""Paths in the user's project: confinement (no escape through '..' or symlinks) and a walk
that honours every .gitignore the way git does (the deepest file with a verdict wins)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sandbox.base import WORKSPACE

ALWAYS_SKIPPED_DIRS = {".git", ".hg", ".svn"}
BACKUPS = Path(".assistant") / "backups"


class PathProblem(ValueError):
    """A path the tools refuse; the message is the tool's error line."""


def resolve_in_project(project: Path, given: str, *, must_exist: bool = True) -> Path:
    """``given`` (relative, or absolute under the project or /workspace) as a real path inside ``project``."""
    text = given.strip()
    if not text:
        raise PathProblem("empty path")
    if text == WORKSPACE or text.startswith(WORKSPACE + "/"):
        text = text[len(WORKSPACE) :].lstrip("/") or "."
    candidate = Path(text)
    if candidate.is_absolute():
        try:
            candidate = candidate.relative_to(project)
        except ValueError:
            raise PathProblem(f"{given} is outside the project") from None
    resolved = (project / candidate).resolve()
    if resolved != project and project not in resolved.parents:
        if (project / candidate).is_symlink() or any(p.is_symlink() for p in (project / candidate).parents):
            raise PathProblem(f"{given} is a symlink that points outside the project")
        raise PathProblem(f"{given} is outside the project")
    if must_exist and not resolved.exists():
        raise PathProblem(f"{given} does not exist")
    return resolved


def relative(project: Path, path: Path) -> str:
    rel = path.relative_to(project).as_posix()
    return rel or "."


def is_protected(project: Path, path: Path) -> str | None:
    """Why the write tools must never touch ``path`` (``.git``, the backups), or None."""
    rel = path.relative_to(project)
    if any(part in ALWAYS_SKIPPED_DIRS for part in rel.parts):
        return f"{rel.as_posix()} is inside version control metadata, which is never writable"
    if rel == BACKUPS or BACKUPS in rel.parents:
        return f"{rel.as_posix()} is inside the assistant's backups"
    return None


def is_binary(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"\0" in handle.read(8192)
    except OSError:
        return True


class IgnoreRules:
    """All .gitignore files between the project root and a directory, loaded once each."""

    def __init__(self, project: Path) -> None:
        import pathspec

        self._pathspec = pathspec
        self.project = project
        self._specs: dict[Path, object | None] = {}

    def _spec(self, directory: Path):
        if directory not in self._specs:
            spec = None
            gitignore = directory / ".gitignore"
            if gitignore.is_file():
                try:
                    lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
                    spec = self._pathspec.GitIgnoreSpec.from_lines(lines)
                except Exception:
                    spec = None
            self._specs[directory] = spec
        return self._specs[directory]

    def ignored(self, path: Path, is_dir: bool) -> bool:
        rel_parts = path.relative_to(self.project).parts
        if any(part in ALWAYS_SKIPPED_DIRS for part in rel_parts):
            return True
        rel_path = Path(*rel_parts)
        if rel_path == BACKUPS or BACKUPS in rel_path.parents:
            return True
        # Deepest .gitignore first: it overrides its ancestors.
        for depth in range(len(rel_parts) - 1, -1, -1):
            base = self.project.joinpath(*rel_parts[:depth])
            spec = self._spec(base)
            if spec is None:
                continue
            sub = "/".join(rel_parts[depth:]) + ("/" if is_dir else "")
            verdict = spec.check_file(sub).include
            if verdict is not None:
                return bool(verdict)
        return False


def walk_files(project: Path, start: Path, *, include_ignored: bool = False) -> Iterator[Path]:
    """Files under ``start`` in a stable order, skipping ignored ones and symlinks that leave the project."""
    rules = IgnoreRules(project)
    if start.is_file():
        yield start
        return
    # An ignored start directory is still walked when asked for explicitly, like `rg path`.
    for root, dirs, files in os.walk(start):
        root_path = Path(root)
        kept = []
        for name in sorted(dirs):
            child = root_path / name
            if child.is_symlink():
                continue  # never follow directory links (loops, escapes)
            if name in ALWAYS_SKIPPED_DIRS or (not include_ignored and rules.ignored(child, True)):
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            child = root_path / name
            if child.is_symlink():
                target = child.resolve()
                if target != project and project not in target.parents:
                    continue
            if not include_ignored and rules.ignored(child, False):
                continue
            yield child
