"""Backups before every approved write, and undo.

Each approved change set gets ``<project>/.assistant/backups/<id>/`` with ``manifest.json``
(which files, whether each existed, its mode, the hash written) and a copy of every original
under ``files/``. ``undo()`` restores the latest change set not yet undone, refusing when a file
was changed again since (unless forced). Manifests are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_bytes, atomic_write_text
from sandbox import SandboxError
from sandbox.tools.paths import BACKUPS


def backups_dir(project: Path) -> Path:
    return project / BACKUPS


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Change:
    """One file of a change set: ``new`` None means delete."""

    path: Path
    new: bytes | None


def apply_changes(project: Path, changes: list[Change], tool: str, summary: str) -> str:
    """Back up, then write every change atomically; on failure restore what was written. Returns the backup id."""
    backup_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    root = backups_dir(project) / backup_id
    files_dir = root / "files"
    entries: list[dict[str, Any]] = []
    for change in changes:
        rel = change.path.relative_to(project).as_posix()
        existed = change.path.is_file()
        entry: dict[str, Any] = {"path": rel, "existed": existed}
        if existed:
            original = change.path.read_bytes()
            copy = files_dir / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(original)
            entry["mode"] = change.path.stat().st_mode & 0o7777
            entry["before_sha256"] = _sha(original)
        entry["after_sha256"] = None if change.new is None else _sha(change.new)
        entries.append(entry)
    manifest = {"id": backup_id, "time": time.time(), "tool": tool, "summary": summary, "files": entries, "undone": False}
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=1))
    done: list[Change] = []
    try:
        for change, entry in zip(changes, entries):
            if change.new is None:
                if change.path.exists():
                    change.path.unlink()
            else:
                change.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(change.path, change.new)
                if "mode" in entry:
                    os.chmod(change.path, entry["mode"])
            done.append(change)
    except OSError as exc:
        _restore(project, root, manifest, only=[c.path.relative_to(project).as_posix() for c in done])
        raise SandboxError(f"could not write {change.path.relative_to(project)}: {exc.strerror or exc}; nothing was changed") from exc
    return backup_id


def _restore(project: Path, root: Path, manifest: dict[str, Any], only: list[str] | None = None) -> list[str]:
    restored = []
    for entry in manifest["files"]:
        if only is not None and entry["path"] not in only:
            continue
        target = project / entry["path"]
        if entry["existed"]:
            atomic_write_bytes(target, (root / "files" / entry["path"]).read_bytes())
            os.chmod(target, entry.get("mode", 0o644))
        elif target.exists():
            target.unlink()
        restored.append(entry["path"])
    return restored


def list_backups(project: Path) -> list[dict[str, Any]]:
    """Change sets, newest first."""
    found = []
    base = backups_dir(project)
    if not base.is_dir():
        return []
    for manifest_path in base.glob("*/manifest.json"):
        try:
            found.append(json.loads(manifest_path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda m: m.get("time", 0), reverse=True)


def undo(project: Path, backup_id: str | None = None, *, force: bool = False) -> dict[str, Any]:
    """Restore the latest (or the named) change set; returns its manifest with what was restored."""
    project = project.resolve()
    candidates = [m for m in list_backups(project) if not m.get("undone")]
    if backup_id:
        candidates = [m for m in list_backups(project) if m["id"] == backup_id]
        if not candidates:
            raise SandboxError(f"no backup named {backup_id}", "see `assistant sandbox undo --list`")
        if candidates[0].get("undone"):
            raise SandboxError(f"backup {backup_id} was already undone")
    if not candidates:
        raise SandboxError("nothing to undo", "no approved change is left to undo")
    manifest = candidates[0]
    root = backups_dir(project) / manifest["id"]
    changed_since = []
    for entry in manifest["files"]:
        target = project / entry["path"]
        current = _sha(target.read_bytes()) if target.is_file() else None
        if current != entry["after_sha256"]:
            changed_since.append(entry["path"])
    if changed_since and not force:
        raise SandboxError(
            f"{', '.join(changed_since)} changed after the assistant wrote it; undo would lose that",
            "use --force to restore anyway",
        )
    manifest["restored"] = _restore(project, root, manifest)
    manifest["undone"] = True
    atomic_write_text(root / "manifest.json", json.dumps({k: v for k, v in manifest.items() if k != "restored"}, indent=1))
    return manifest


def prune(project: Path, keep: int = 50) -> None:
    """Drop the oldest change sets beyond ``keep``."""
    for manifest in list_backups(project)[keep:]:
        shutil.rmtree(backups_dir(project) / manifest["id"], ignore_errors=True)
