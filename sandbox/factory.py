"""Choosing the backend: Docker whenever an engine answers, else bubblewrap, else none (confirm each call)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox import SandboxError
from sandbox.base import Sandbox
from sandbox.host_backend import Confirm, HostSandbox
from sandbox.limits import SandboxSettings


@dataclass
class Probe:
    """What this machine offers, and which backend a session would get."""

    docker: str | None  # engine version, or None
    docker_error: str | None
    bwrap: bool
    bwrap_error: str | None
    chosen: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def docker_version(settings: SandboxSettings) -> tuple[str | None, str | None]:
    from sandbox.docker_backend import connect

    try:
        client = connect(settings, timeout=5)
    except SandboxError as exc:
        return None, str(exc)
    try:
        return str(client.version().get("Version", "unknown")), None
    except Exception as exc:  # pragma: no cover - answered ping, failed version
        return None, str(exc)
    finally:
        client.close()


def bwrap_works() -> tuple[bool, str | None]:
    """Can bwrap build a minimal sandbox here (user namespaces may be disabled)?"""
    path = shutil.which("bwrap")
    if path is None:
        return False, "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0:
        flags = ["--unshare-pid", "--unshare-net"]
    else:
        flags = ["--unshare-all", "--unshare-user"]
    argv = [path, *flags, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode != 0:
        return False, done.stderr.strip()[:200] or f"exit {done.returncode}"
    return True, None


def probe(settings: SandboxSettings) -> Probe:
    version, docker_error = docker_version(settings) if settings.backend in ("auto", "docker") else (None, "not tried")
    ok, bwrap_error = bwrap_works() if settings.backend in ("auto", "bwrap") else (False, "not tried")
    if settings.backend != "auto":
        chosen = settings.backend
    elif version:
        chosen = "docker"
    elif ok:
        chosen = "bwrap"
    else:
        chosen = "none"
    return Probe(version, docker_error, ok, bwrap_error, chosen)


def open_sandbox(
    settings: SandboxSettings,
    project: str | os.PathLike,
    *,
    confirm: Confirm | None = None,
    start: bool = True,
) -> Sandbox:
    """The session's sandbox, started. ``confirm`` is asked before each call only when there is
    no isolation at all (backend "none")."""
    backend = settings.backend
    if backend == "auto":
        backend = probe(settings).chosen
    sandbox: Sandbox
    if backend == "docker":
        from sandbox.docker_backend import DockerSandbox

        sandbox = DockerSandbox(settings, Path(project))
    elif backend == "bwrap":
        from sandbox.bwrap_backend import BwrapSandbox

        sandbox = BwrapSandbox(settings, Path(project))
    else:
        sandbox = HostSandbox(settings, Path(project), confirm=confirm)
    if start:
        sandbox.start()
    return sandbox
