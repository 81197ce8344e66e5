"""The promoted-model registry: versions on disk, which one is current, promotion and rollback.

Layout under ``<models>/continual/``::

    registry.json            {"current": id, "versions": [...], "keep": N}   (written atomically)
    versions/<id>/           model.pth (float), model_<q>.pth (what ships), adapter.pt (the update)
    runs/<run>.partial/      a retrain in progress; never read by the runtime
    reports/<run>.json       one report per run
    retrain.lock             held (flock) while a retrain runs

A version directory is complete before it gets its final name (rename is atomic), and the registry
names it only after that, so a reader sees the old current model or the new one, never a mix, and a
kill at any moment leaves the last promoted model intact. Promotion and rollback rewrite only
``registry.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from common.atomic import atomic_write_text
from trainer import TrainerError

DEFAULT_KEEP = 5


class Registry:
    def __init__(self, models_dir: str | Path) -> None:
        self.root = Path(models_dir) / "continual"
        self.path = self.root / "registry.json"
        self.versions_dir = self.root / "versions"
        self.runs_dir = self.root / "runs"
        self.reports_dir = self.root / "reports"
        self.lock_path = self.root / "retrain.lock"

    # ---- reading -------------------------------------------------------------------------------
    def load(self) -> dict:
        if not self.path.exists():
            return {"current": None, "versions": [], "keep": DEFAULT_KEEP, "history": []}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TrainerError(f"the model registry {self.path} is damaged ({exc})",
                               "restore it from a backup or remove it and register the base model again") from exc
        data.setdefault("versions", [])
        data.setdefault("keep", DEFAULT_KEEP)
        data.setdefault("history", [])  # ids in the order they became current (rollback walks it back)
        return data

    @property
    def initialised(self) -> bool:
        return self.path.exists()

    def version(self, version_id: str, data: dict | None = None) -> dict:
        data = data or self.load()
        for v in data["versions"]:
            if v["id"] == version_id:
                return v
        raise TrainerError(f"no model version '{version_id}'", "see 'assistant retrain --history'")

    def current(self, data: dict | None = None) -> dict | None:
        data = data or self.load()
        return self.version(data["current"], data) if data.get("current") else None

    def file(self, version: dict, kind: str) -> Path:
        """``kind``: float | shipped | adapter."""
        name = version.get({"float": "float", "shipped": "shipped", "adapter": "adapter"}[kind])
        return self.versions_dir / version["id"] / name if name else None

    # ---- writing -------------------------------------------------------------------------------
    def _write(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=1))

    def new_run_dir(self, run_id: str) -> Path:
        path = self.runs_dir / f"{run_id}.partial"
        path.mkdir(parents=True, exist_ok=False)
        return path

    def clean_stale(self) -> list[str]:
        """Remove what an interrupted run left: partial run directories and versions never registered."""
        removed = []
        if self.runs_dir.exists():
            for path in self.runs_dir.glob("*.partial"):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        if self.versions_dir.exists():
            known = {v["id"] for v in self.load()["versions"]}
            for path in self.versions_dir.iterdir():
                if path.is_dir() and path.name not in known:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(str(path))
        return removed

    def add_version(self, staged: Path, entry: dict, promote: bool) -> dict:
        """Move a complete staged directory into ``versions/`` and record it (optionally as current)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        final = self.versions_dir / entry["id"]
        os.replace(staged, final)  # atomic: the directory appears complete or not at all
        data = self.load()
        entry = {**entry, "registered": time.time()}
        data["versions"].append(entry)
        if promote:
            data["current"] = entry["id"]
            data["history"].append(entry["id"])
            entry["promoted"] = time.time()
        self._write(data)
        if promote:
            self.prune(data)
        return entry

    def promote(self, version_id: str) -> dict:
        data = self.load()
        entry = self.version(version_id, data)
        entry["promoted"] = time.time()
        data["current"] = version_id
        data["history"].append(version_id)
        self._write(data)
        return entry

    def rollback(self, to: str | None = None) -> tuple[dict, dict]:
        """Make ``to`` current again, by default the model that was current before this one
        (rolling back twice goes two promotions back)."""
        data = self.load()
        current = self.current(data)
        if current is None:
            raise TrainerError("no promoted model to roll back from", "run 'assistant retrain' first")
        if to is None:
            history = data["history"]
            position = len(history) - 1
            while position >= 0 and history[position] == current["id"]:
                position -= 1
            while position >= 0 and not self._on_disk(history[position], data):
                position -= 1
            if position < 0:
                raise TrainerError("there is no earlier promoted model to roll back to", "see 'assistant model versions'")
            target = self.version(history[position], data)
            data["history"] = history[: position + 1]
        else:
            target = self.version(to, data)
            if not self._on_disk(to, data):
                raise TrainerError(f"version {to} was pruned from disk", "pick one listed by 'assistant model versions'")
            data["history"].append(to)
        target["promoted"] = time.time()
        target["rolled_back_from"] = current["id"]
        data["current"] = target["id"]
        self._write(data)
        return current, target

    def _on_disk(self, version_id: str, data: dict) -> bool:
        shipped = self.file(self.version(version_id, data), "shipped")
        return shipped is not None and shipped.exists()

    def prune(self, data: dict | None = None) -> list[str]:
        """Keep the last ``keep`` promoted versions on disk (and always the current one)."""
        data = data or self.load()
        recent: list[str] = []
        for version_id in reversed(data["history"]):
            if version_id not in recent:
                recent.append(version_id)
        keep_ids = set(recent[: data.get("keep", DEFAULT_KEEP)]) | {data.get("current")}
        removed = []
        for v in data["versions"]:
            path = self.versions_dir / v["id"]
            if v["id"] not in keep_ids and path.exists():
                shutil.rmtree(path, ignore_errors=True)
                v["pruned"] = True
                removed.append(v["id"])
        if removed:
            self._write(data)
        return removed

    def set_keep(self, keep: int) -> None:
        data = self.load()
        data["keep"] = keep
        self._write(data)


def promoted_model(models_dir: str | Path) -> Path | None:
    """The checkpoint the runtime should load: the current version's shipped (quantized) file."""
    registry = Registry(models_dir)
    if not registry.initialised:
        return None
    current = registry.current()
    return registry.file(current, "shipped") if current else None
