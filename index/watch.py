"""Keep an index fresh while files change: a watchdog observer, debounced, then a hash-diff update.

Editors save atomically (write a temp file, rename it over the original): one save can produce
many events, and the real file shows up only as a ``moved`` event's destination. So a move
counts as a deletion of its source and a modification of its destination; temp/swap files and
ignored paths are dropped; events are collected until the project has been quiet for
``debounce_ms`` (or for at most ``MAX_DELAY`` while events keep coming), then the touched paths
are updated (unchanged content costs a hash, not an embedding).

The watcher runs in its own thread; ``on_update``/``on_error`` are called from it (a TUI should
post a message from there rather than touch widgets).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from index.files import is_temp_file

MAX_DELAY = 3.0      # seconds: flush even if events never stop
MAX_PATHS = 2000     # more touched paths than this: one full scan is cheaper


class IndexWatcher:
    def __init__(self, index, on_update: Callable | None = None, on_error: Callable | None = None) -> None:
        self.index = index
        self.root: Path = index.root
        self.debounce = max(0.05, index.settings.debounce_ms / 1000)
        self.on_update = on_update
        self.on_error = on_error
        self._pending: set[str] = set()
        self._full = False
        self._first_event = 0.0
        self._last_event = 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._observer = None
        self._thread: threading.Thread | None = None
        self.updates = 0          # updates run (tests and the TUI read it)
        self.busy = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> IndexWatcher:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                watcher._event(event)

        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.root), recursive=True)
        self._observer.daemon = True
        self._observer.start()
        self._thread = threading.Thread(target=self._loop, name="index-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Block until interrupted (the CLI's ``--watch``)."""
        try:
            while not self._stop.is_set():
                time.sleep(0.5)
        finally:
            self.stop()

    # ------------------------------------------------------------------ events
    def _relevant(self, path: str) -> str | None:
        """The project-relative path of an event worth an update, or None."""
        try:
            rel = Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:
            return None
        if rel.startswith("..") or rel == ".":
            return None
        parts = rel.split("/")
        if parts[0] in (".assistant", ".git") or is_temp_file(rel):
            return None
        return rel

    def _event(self, event) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if kind == "modified" and event.is_directory:
            return  # a directory's mtime: its children report themselves
        paths = [event.src_path]
        if kind == "moved":
            paths.append(event.dest_path)  # the destination is the real, new content
        touched = []
        for raw in paths:
            raw = os.fsdecode(raw)
            rel = self._relevant(raw)
            if rel is None:
                continue
            if not (kind == "deleted" or (kind == "moved" and raw == os.fsdecode(event.src_path))) and \
                    self.index.scanner.rules.is_ignored_path(rel, event.is_directory):
                continue
            touched.append(rel)
        if not touched:
            return
        now = time.monotonic()
        with self._cond:
            if not self._pending and not self._full:
                self._first_event = now
            self._last_event = now
            for rel in touched:
                if rel.rsplit("/", 1)[-1] == ".gitignore":
                    self._full = True
                self._pending.add(rel)
            if len(self._pending) > MAX_PATHS:
                self._full = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ the worker
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and not (self._pending or self._full):
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                quiet = time.monotonic() - self._last_event
                waited = time.monotonic() - self._first_event
                if quiet < self.debounce and waited < MAX_DELAY:
                    self._cond.wait(min(self.debounce - quiet, MAX_DELAY - waited))
                    continue
                paths, full = sorted(self._pending), self._full
                self._pending, self._full = set(), False
                self.busy = True
            try:
                summary = self.index.update(paths=None if full else paths)
                self.updates += 1
                if self.on_update:
                    self.on_update(summary)
            except Exception as exc:  # noqa: BLE001 - the watcher must survive a bad update
                if self.on_error:
                    self.on_error(exc)
            finally:
                self.busy = False

    def idle(self) -> bool:
        """No events waiting and no update running."""
        with self._cond:
            return not self._pending and not self._full and not self.busy
