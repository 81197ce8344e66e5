"""Undo for agent turns: a shadow git store under ``<project>/.assistant/shadow.git``.

The user's own ``.git`` is never read or written: every command runs with ``GIT_DIR`` pointing at
the shadow store and ``GIT_WORK_TREE`` at the project, with the user's and the system's git
configuration ignored. Before a turn's first change the project's state is committed ("before"),
after the turn again ("after"); undo puts back the "before" content of exactly the files that
changed between the two, refusing files the user has edited since (unless forced).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from assistant.agent.errors import AgentError

SHADOW_DIR = Path(".assistant") / "shadow.git"


class ShadowGit:
    def __init__(self, project: Path) -> None:
        self.project = Path(project).resolve()
        self.git_dir = self.project / SHADOW_DIR

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(GIT_DIR=str(self.git_dir), GIT_WORK_TREE=str(self.project), GIT_CONFIG_NOSYSTEM="1",
                   GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_NAME="assistant", GIT_AUTHOR_EMAIL="assistant@localhost",
                   GIT_COMMITTER_NAME="assistant", GIT_COMMITTER_EMAIL="assistant@localhost", GIT_TERMINAL_PROMPT="0")
        return env

    def _git(self, *args: str, check: bool = True) -> str:
        try:
            done = subprocess.run(["git", *args], check=False, cwd=self.project, env=self._env(), capture_output=True, text=True,
                                  timeout=120)
        except FileNotFoundError:
            raise AgentError("git is not installed, so turns cannot be checkpointed for undo",
                             "install git (apt-get install git)") from None
        if check and done.returncode != 0:
            raise AgentError(f"shadow git {args[0]} failed: {done.stderr.strip()[:200]}")
        return done.stdout

    def _ensure(self) -> None:
        if (self.git_dir / "HEAD").exists():
            return
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        self._git("init", "-q")
        self._git("config", "core.autocrlf", "false")
        self._git("config", "core.quotepath", "false")
        exclude = self.git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("/.assistant/\n.git/\n")  # the assistant's own state is never checkpointed

    def snapshot(self, message: str, force_paths: list[str] | tuple[str, ...] = ()) -> str:
        """Commit the project's current state (honouring its .gitignore files, plus ``force_paths``
        even when ignored: the files the agent writes, e.g. a .env); returns the commit id."""
        self._ensure()
        self._git("add", "-A", ".")
        self._force_add(force_paths)
        self._git("commit", "-q", "--allow-empty", "--no-verify", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    def include(self, paths: list[str] | tuple[str, ...]) -> str:
        """Add ``paths`` as they are now to the last snapshot (amended); returns its new id. For files
        about to be written that the "before" snapshot left out (ignored ones)."""
        self._force_add(paths)
        self._git("commit", "-q", "--amend", "--no-edit", "--allow-empty", "--no-verify")
        return self._git("rev-parse", "HEAD").strip()

    def _force_add(self, paths) -> None:
        existing = [p for p in paths if (self.project / p).is_file() or (self.project / p).is_symlink()]
        if existing:
            self._git("add", "-f", "--", *existing)

    def changed(self, before: str, after: str) -> list[str]:
        out = self._git("diff", "--name-only", "-z", "--no-renames", before, after)
        return sorted(p for p in out.split("\0") if p)

    def _blob(self, commit: str, path: str) -> bytes | None:
        done = subprocess.run(["git", "cat-file", "blob", f"{commit}:{path}"], check=False, cwd=self.project, env=self._env(),
                              capture_output=True, timeout=60)
        return done.stdout if done.returncode == 0 else None

    def restore(self, before: str, after: str, force: bool = False) -> list[str]:
        """Put back ``before``'s content of the files that differ between ``before`` and ``after``."""
        from common.atomic import atomic_write_bytes

        paths = self.changed(before, after)
        if not force:
            edited = [p for p in paths if self._current(p) != self._blob(after, p)]
            if edited:
                raise AgentError(f"not undone: changed since the turn: {', '.join(edited[:5])}",
                                 "undo with force to overwrite them")
        for path in paths:
            target = self.project / path
            old = self._blob(before, path)
            if old is None:
                if target.is_file() or target.is_symlink():
                    target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, old)
                if self._git("ls-tree", before, "--", path).startswith("100755"):
                    target.chmod(target.stat().st_mode | 0o111)  # an executable file comes back executable
        return paths

    def _current(self, path: str) -> bytes | None:
        target = self.project / path
        return target.read_bytes() if target.is_file() else None
