"""No isolation: the last resort when neither Docker nor bubblewrap works.

Code would run directly on the user's machine, as the user, with only rlimits and a timeout.
So every call needs the user's confirmation (``confirm(code, language) -> bool``, supplied by
the TUI or the CLI); without it the call is refused and the result says why. The environment
is cleared (no API keys), and the call runs in a scratch directory, not in the project.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from sandbox.base import WRAPPER, ExecResult, Sandbox, SandboxInfo
from sandbox.bwrap_backend import read_confined, run_process
from sandbox.limits import SandboxSettings

Confirm = Callable[[str, str], bool]
REFUSAL = (
    "refused: no sandbox is available here (no Docker engine answers and bubblewrap does not work), "
    "so this code would run directly on your machine; it runs only if you confirm the call"
)
# The isolated backends end a call with `kill -9 -1` (every process of the sandbox user); on the
# host that would be every process of the user, so here `run_process` kills the call's session.
HOST_WRAPPER = WRAPPER.replace("kill -9 -1 2>/dev/null", ":")
assert HOST_WRAPPER != WRAPPER


class HostSandbox(Sandbox):
    name = "none"

    def __init__(self, settings: SandboxSettings, project: str | Path, *, confirm: Confirm | None = None) -> None:
        super().__init__(settings, project)
        self.confirm = confirm
        self.workspace = str(self.project)
        self._tmpdir: Path | None = None
        self._proc = None

    def start(self) -> None:
        if self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="assistant-unsandboxed-"))
            self.scratch = str(self._tmpdir)
            atexit.register(self.close)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def run(self, code: str, language: str = "bash", **kwargs) -> ExecResult:  # type: ignore[override]
        self.start()
        if self.confirm is None or not self.confirm(code, language):
            return ExecResult(stdout="", stderr=REFUSAL, exit_code=None, duration_s=0.0, backend=self.name, refused=True)
        kwargs.setdefault("snippet_path", f"{self.scratch}/snippet_{self._calls + 1}.py")
        return super().run(code, language, **kwargs)

    def _execute(self, argv: list[str], timeout: float, cwd: str) -> ExecResult:
        argv = [argv[0], argv[1], HOST_WRAPPER, *argv[3:]]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.scratch, "TMPDIR": self.scratch,
               "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
        s = self.settings
        prlimit = shutil.which("prlimit")
        if prlimit:
            argv = [prlimit, f"--as={s.memory_mb << 20}", f"--cpu={math.ceil(timeout) + 1}",
                    f"--fsize={s.fsize_mb << 20}", f"--nofile={s.nofile}", "--core=0", "--", *argv]  # fmt: skip
        return run_process(self, argv, timeout, cgroup_oom=False, cwd=cwd, env=env, kill_session=True)

    def read_file(self, path: str, max_bytes: int = 1 << 20) -> bytes | None:
        if self._tmpdir is None or not path.startswith(self.scratch + "/"):
            return None
        return read_confined(self._tmpdir, path[len(self.scratch) + 1 :], max_bytes)

    def info(self) -> SandboxInfo:
        return SandboxInfo(
            backend="none",
            isolation="none",
            label="NO SANDBOX · confirm each call",
            limits=self.settings.describe_limits(),
            details=["code runs directly on this machine as you, with rlimits and a timeout only"],
            warning="No Docker engine answers and bubblewrap does not work: each code run needs your confirmation.",
        )

