"""The sandbox's settings: one dataclass, safe defaults, the ``[sandbox]`` table of the settings file.

Every limit the backends enforce lives here, so ``assistant sandbox status`` can show exactly
what holds. Values are checked when the object is built; a bad one is a ``SandboxError``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from sandbox import SandboxError

BACKENDS = ("auto", "docker", "bwrap", "none")
DEFAULT_IMAGE = "python:3.12-slim"
# The image `assistant sandbox build` makes without a registry (debootstrap + docker import).
OFFLINE_IMAGE = "assistant-sandbox:bookworm"


@dataclass(frozen=True)
class SandboxSettings:
    """Limits and choices for model-run code. The defaults are the safe ones."""

    backend: str = "auto"  # auto: docker if an engine answers, else bwrap, else none (confirm each call)
    image: str = DEFAULT_IMAGE  # docker image; `assistant sandbox build` prepares it
    docker_host: str = ""  # empty: DOCKER_HOST or the default socket
    # uid:gid model code runs as, never root. "auto": your own uid (so the sandbox can read the
    # project exactly as you can, though never write it), or 65534 (nobody) when you are root.
    user: str = "auto"
    memory_mb: int = 512  # RAM cap; swap is capped to the same value (no swap)
    cpus: float = 1.0  # CPU quota in cores
    pids: int = 128  # processes + threads
    timeout_s: float = 30.0  # wall clock per call; the whole process tree is killed at it
    max_output_kib: int = 64  # per stream (stdout, stderr); the rest is cut with a marker
    tmp_mb: int = 64  # size of the private /tmp
    scratch_mb: int = 256  # size of the writable /scratch (docker; bwrap uses a host temp dir)
    nofile: int = 256  # open files
    fsize_mb: int = 64  # largest file a call may write

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SandboxError(f"settings: sandbox.backend '{self.backend}' is unknown", f"use one of {', '.join(BACKENDS)}")
        if not isinstance(self.image, str) or not self.image.strip():
            raise SandboxError("settings: sandbox.image must be a non-empty image name")
        if self.user != "auto" and (
            not re.fullmatch(r"\d+(:\d+)?", str(self.user)) or int(str(self.user).split(":")[0]) == 0
        ):
            raise SandboxError(f"settings: sandbox.user '{self.user}' must be \"auto\" or a numeric non-root uid[:gid]")
        bounds: dict[str, tuple[float, float]] = {
            "memory_mb": (32, 1 << 20),
            "cpus": (0.05, 1024),
            "pids": (8, 1 << 16),
            "timeout_s": (0.1, 24 * 3600),
            "max_output_kib": (1, 1 << 20),
            "tmp_mb": (1, 1 << 20),
            "scratch_mb": (1, 1 << 20),
            "nofile": (16, 1 << 20),
            "fsize_mb": (1, 1 << 20),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise SandboxError(f"settings: sandbox.{name} = {value!r} is out of range", f"use a number from {low:g} to {high:g}")

    @property
    def uid_gid(self) -> str:
        """The resolved "uid:gid"."""
        if self.user == "auto":
            uid = os.getuid()
            return "65534:65534" if uid == 0 else f"{uid}:{os.getgid()}"
        return self.user if ":" in self.user else f"{self.user}:{self.user}"

    @property
    def uid(self) -> int:
        return int(self.uid_gid.split(":")[0])

    @property
    def gid(self) -> int:
        return int(self.uid_gid.split(":")[1])

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_kib) * 1024

    def replace(self, **changes: Any) -> SandboxSettings:
        return dataclasses.replace(self, **changes)

    def describe_limits(self) -> dict[str, str]:
        """The limits as a person reads them (for `assistant sandbox status` and the TUI)."""
        return {
            "memory": f"{self.memory_mb} MiB (no swap)",
            "cpus": f"{self.cpus:g}",
            "processes": str(self.pids),
            "timeout": f"{self.timeout_s:g} s per call",
            "output": f"{self.max_output_kib} KiB per stream",
            "tmp": f"{self.tmp_mb} MiB",
            "scratch": f"{self.scratch_mb} MiB",
            "open files": str(self.nofile),
            "file size": f"{self.fsize_mb} MiB",
            "user": self.uid_gid,
        }
