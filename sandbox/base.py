"""The one interface every backend implements, and the pieces they share.

A ``Sandbox`` lives for one assistant session. ``run(code, language)`` executes one call and
returns an ``ExecResult``; ``close()`` ends the session (and removes its container). Inside,
code sees the user's project read-only at ``workspace`` and may write only to ``scratch``
and ``/tmp``.

Every call runs under the same small shell wrapper (``WRAPPER``): it enforces the wall-clock
timeout with coreutils ``timeout`` (which kills the call's whole process group), then kills
every process the call left behind (``kill -9 -1`` as the sandbox user: orphans, daemons,
a fork bomb's survivors), and reports the exit status and the memory cgroup's OOM-kill
count on a trailer line that the host strips from stderr.
"""

from __future__ import annotations

import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import SandboxError
from sandbox.limits import SandboxSettings

WORKSPACE = "/workspace"  # the user's project, read-only
SCRATCH = "/scratch"  # writable scratch space that lives as long as the session
LANGUAGES = ("bash", "python")

# $1 timeout seconds (0: the host enforces it), $2 trailer mark, $3 language, $4 source, $5 snippet path, then argv for the program.
WRAPPER = r"""
t=$1; mark=$2; lang=$3; src=$4; snippet=$5; shift 5
_oom() {
  _o=0
  for _f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    if [ -r "$_f" ]; then
      while read -r _k _v; do [ "$_k" = oom_kill ] && _o=$_v; done < "$_f"
      return
    fi
  done
}
_oom; _before=$_o
if [ "$lang" = python ]; then
  printf '%s' "$src" > "$snippet" || exit 126
  set -- python3 "$snippet" "$@"
else
  set -- bash -c "$src" bash "$@"
fi
if [ "$t" != 0 ] && command -v timeout >/dev/null 2>&1; then
  timeout -s KILL "$t" "$@" </dev/null
else
  "$@" </dev/null
fi
_rc=$?
kill -9 -1 2>/dev/null
_oom
printf '\n%s %s %s\n' "$mark" "$_rc" "$((_o - _before))" >&2
exit $_rc
"""

# What a memory limit looks like when it is an rlimit rather than a cgroup (bwrap, host backends).
MEMORY_ERROR_SIGNS = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"std::bad_alloc",
    b"out of memory",
    b"Out of memory",
)


@dataclass
class ExecResult:
    """The outcome of one call, as the tools and the TUI show it."""

    stdout: str
    stderr: str
    exit_code: int | None
    duration_s: float
    timed_out: bool = False
    oom_killed: bool = False
    truncated: bool = False
    backend: str = ""
    refused: bool = False  # no sandbox and the user did not confirm this call
    note: str = ""  # e.g. "the sandbox container had died and was restarted"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.oom_killed or self.refused)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = round(self.duration_s, 3)
        return data


@dataclass
class SandboxInfo:
    """What the user should know about where model code runs (status command, TUI status bar)."""

    backend: str  # docker | bwrap | none
    isolation: str  # container | namespaces | none
    label: str  # short, for a status bar: "docker · isolated"
    details: list[str] = field(default_factory=list)
    image: str | None = None
    limits: dict[str, str] = field(default_factory=dict)
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OutputCapture:
    """Keeps the first and last halves of a stream up to ``limit`` bytes; counts the rest.

    Memory stays bounded however much a program prints (200 MB of output costs ~3x ``limit``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(int(limit), 64)
        self.half = self.limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            cap = self.limit - self.half
            if len(self.tail) > 2 * cap:
                del self.tail[: len(self.tail) - cap]

    def pop_trailer(self, mark: bytes) -> tuple[int, int] | None:
        """Remove the wrapper's trailer line (``\\n<mark> <rc> <oom>\\n``) and return (rc, oom)."""
        buf = self.tail if self.tail else self.head
        at = buf.rfind(b"\n" + mark + b" ")
        if at < 0 or not buf.endswith(b"\n"):
            return None
        line = bytes(buf[at + 1 + len(mark) + 1 : -1])
        try:
            rc_text, oom_text = line.split(b" ")
            parsed = (int(rc_text), int(oom_text))
        except ValueError:
            return None
        removed = len(buf) - at
        del buf[at:]
        self.total -= removed
        return parsed

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def bytes(self) -> bytes:
        cap = self.limit - self.half
        if not self.truncated:
            return bytes(self.head + self.tail)
        dropped = self.total - len(self.head) - cap
        marker = f"\n[... {dropped:,} bytes of output cut (limit {self.limit // 1024} KiB per stream) ...]\n"
        return bytes(self.head) + marker.encode() + bytes(self.tail[-cap:])

    def text(self) -> str:
        return self.bytes().decode("utf-8", errors="replace")


def looks_like_memory_error(stderr_tail: bytes) -> bool:
    return any(sign in stderr_tail for sign in MEMORY_ERROR_SIGNS)


class Sandbox(ABC):
    """One session's sandbox. Calls are serialised: the wrapper kills the previous call's leftovers."""

    name = "base"
    workspace = WORKSPACE
    scratch = SCRATCH

    def __init__(self, settings: SandboxSettings, project: str | Path) -> None:
        self.settings = settings
        self.project = Path(project).resolve()
        if not self.project.is_dir():
            raise SandboxError(f"project folder {project} does not exist", "run the assistant inside a project folder")
        self._lock = threading.Lock()
        self._mark = ("ASSISTANT-SANDBOX-" + secrets.token_hex(8)).encode()
        self._calls = 0
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Prepare the session (start the container, create the scratch dir)."""

    @abstractmethod
    def close(self) -> None:
        """End the session and remove everything it made. Safe to call twice."""

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------
    def run(
        self,
        code: str,
        language: str = "bash",
        *,
        timeout: float | None = None,
        args: Sequence[str] = (),
        cwd: str | None = None,
        snippet_path: str | None = None,
    ) -> ExecResult:
        """Run ``code`` (a bash command line or a Python program) as one call in the sandbox."""
        if language not in LANGUAGES:
            raise SandboxError(f"unknown language '{language}'", f"use one of {', '.join(LANGUAGES)}")
        if self.closed:
            raise SandboxError("the sandbox session is closed", "start a new session")
        limit = self.settings.timeout_s if timeout is None else min(float(timeout), self.settings.timeout_s)
        limit = max(limit, 0.1)
        with self._lock:
            self._calls += 1
            snippet = snippet_path or f"/tmp/snippet_{self._calls}.py"
            argv = ["/bin/sh", "-c", WRAPPER, "sh", f"{limit:g}", self._mark.decode(), language, code, snippet, *args]
            return self._execute(argv, limit, cwd or self.workspace)

    @abstractmethod
    def _execute(self, argv: list[str], timeout: float, cwd: str) -> ExecResult:
        """Run the wrapper ``argv`` with a host-side deadline a little after ``timeout``."""

    @abstractmethod
    def read_file(self, path: str, max_bytes: int = 1 << 20) -> bytes | None:
        """Read a file the sandbox wrote (under scratch or /tmp); None if it does not exist."""

    @abstractmethod
    def info(self) -> SandboxInfo:
        """What the user should know about this backend."""

    # -- helpers for backends --------------------------------------------------------------
    def _finish(
        self,
        out: OutputCapture,
        err: OutputCapture,
        exit_code: int | None,
        started: float,
        timeout: float,
        *,
        killed_by_host: bool = False,
        note: str = "",
        cgroup_oom: bool = True,
    ) -> ExecResult:
        """Turn the raw streams and status into an ExecResult (trailer, OOM, timeout)."""
        duration = time.monotonic() - started
        trailer = err.pop_trailer(self._mark)
        oom = False
        if trailer is not None:
            exit_code, oom_count = trailer
            oom = oom_count > 0
        if exit_code is not None and exit_code < 0:  # killed by a signal (subprocess convention)
            exit_code = 128 - exit_code
        killed = exit_code in (137, -9) or killed_by_host
        if not oom and not cgroup_oom and exit_code not in (0, None):
            oom = looks_like_memory_error(bytes(err.tail[-4096:] or err.head[-4096:]))
        timed_out = (killed and not oom and duration >= timeout - 0.05) or killed_by_host
        return ExecResult(
            stdout=out.text(),
            stderr=err.text(),
            exit_code=exit_code,
            duration_s=duration,
            timed_out=timed_out,
            oom_killed=oom,
            truncated=out.truncated or err.truncated,
            backend=self.name,
            note=note,
        )
