"""The fallback when no Docker engine answers: bubblewrap namespaces plus rlimits.

Each call is a fresh ``bwrap``: new pid, network (only ``lo``), ipc and uts namespaces; the
system's /usr (and the merged-usr links) bound read-only, a handful of /etc files, a private
/proc, /dev and size-capped /tmp, the project read-only at /workspace and a per-session host
directory at /scratch. No home, no /run (so no docker.sock), a cleared environment.

Model code runs as uid 65534, never as the invoking user's identity with capabilities:
- invoked as a normal user: a user namespace maps the user to 65534, all capabilities dropped,
  no nested user namespaces;
- invoked as root: bwrap builds the namespaces as root, then ``setpriv`` drops to the real
  uid 65534 with no capabilities and no-new-privs (so RLIMIT_NPROC binds: it never binds root).

Limits are rlimits (``prlimit``): address space, processes, CPU seconds, file size, open files.
There are no cgroups here, so a memory overrun shows up as a failed allocation
(``MemoryError``), which the result reports as ``oom_killed``; a fork bomb meets RLIMIT_NPROC.
"""

from __future__ import annotations

import atexit
import glob
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sandbox import SandboxError
from sandbox.base import SCRATCH, WORKSPACE, ExecResult, OutputCapture, Sandbox, SandboxInfo
from sandbox.limits import SandboxSettings

GRACE_S = 2.0
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    "HOME": SCRATCH,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "mime.types")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def count_processes(uid: int) -> int:
    """Processes (threads included, as RLIMIT_NPROC counts them) owned by ``uid``."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields.get("Threads", "1").strip() or 1)
        except (OSError, KeyError, ValueError):
            continue
    return count


class BwrapSandbox(Sandbox):
    name = "bwrap"

    def __init__(self, settings: SandboxSettings, project: str | Path) -> None:
        super().__init__(settings, project)
        self._tmpdir: Path | None = None
        self.host_scratch: Path | None = None
        self._as_root = os.geteuid() == 0
        self._proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.host_scratch is not None:
            return
        if bwrap_path() is None:
            raise SandboxError("bubblewrap (bwrap) is not installed", "install it, e.g. `apt-get install bubblewrap`")
        if self._as_root and shutil.which("setpriv") is None:
            raise SandboxError("setpriv is missing (needed to drop root inside bwrap)", "install util-linux")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="assistant-sandbox-"))
        self.host_scratch = self._tmpdir / "scratch"
        self.host_scratch.mkdir()
        uid, gid = self.settings.uid, self.settings.gid
        (self._tmpdir / "passwd").write_text(
            f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:sandbox:{SCRATCH}:/bin/sh\n"
        )
        (self._tmpdir / "group").write_text(f"root:x:0:\nsandbox:x:{gid}:\n")
        if self._as_root:
            os.chown(self.host_scratch, uid, gid)
        atexit.register(self.close)
        probe = self.run("true", timeout=10)
        if probe.exit_code != 0:
            self.close()
            raise SandboxError(
                f"bubblewrap cannot create a sandbox here: {probe.stderr.strip()[:200] or probe.exit_code}",
                "unprivileged user namespaces may be disabled (kernel.unprivileged_userns_clone)",
            )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc)
        if self._tmpdir is not None:
            _force_rmtree(self._tmpdir)
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    # -- the command line ------------------------------------------------------------------
    def _bwrap_argv(self, inner: list[str], cwd: str) -> list[str]:
        assert self._tmpdir is not None and self.host_scratch is not None
        s = self.settings
        # pid, network, ipc and uts namespaces. Not the cgroup namespace: it costs ~15 ms a call and
        # hides nothing here, since no cgroup filesystem (no /sys) is mounted in the sandbox.
        argv = [bwrap_path() or "bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        if not self._as_root:  # as root: no user namespace, so setpriv can become the real uid 65534
            argv += ["--unshare-user", "--uid", str(s.uid), "--gid", str(s.gid), "--cap-drop", "ALL", "--disable-userns"]
        argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/") / top
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), f"/{top}"]
            elif path.is_dir():
                argv += ["--ro-bind", str(path), f"/{top}"]
        for name in ETC_FILES:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for python_etc in sorted(glob.glob("/etc/python3*")):
            argv += ["--ro-bind", python_etc, python_etc]
        argv += ["--ro-bind", str(self._tmpdir / "passwd"), "/etc/passwd"]
        argv += ["--ro-bind", str(self._tmpdir / "group"), "/etc/group"]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--size", str(s.tmp_mb << 20), "--perms", "1777", "--tmpfs", "/tmp"]
        argv += ["--ro-bind", str(self.project), WORKSPACE]
        argv += ["--bind", str(self.host_scratch), SCRATCH]
        argv += ["--chdir", cwd, "--clearenv"]
        for key, value in ENV.items():
            argv += ["--setenv", key, value]
        argv += ["--"]
        if self._as_root:
            argv += [
                "setpriv", f"--reuid={s.uid}", f"--regid={s.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            ]  # fmt: skip
        return argv + inner

    def _prlimit_argv(self, timeout: float) -> list[str]:
        s = self.settings
        running = count_processes(s.uid if self._as_root else os.getuid())
        limits = {
            "--as": s.memory_mb << 20,
            "--nproc": running + s.pids,
            "--cpu": math.ceil(timeout) + 1,
            "--fsize": s.fsize_mb << 20,
            "--nofile": s.nofile,
            "--core": 0,
        }
        prlimit = shutil.which("prlimit")
        if prlimit is None:
            raise SandboxError("prlimit is missing (needed for the sandbox's limits)", "install util-linux")
        return [prlimit] + [f"{flag}={value}" for flag, value in limits.items()] + ["--"]

    # -- calls -----------------------------------------------------------------------------
    def _execute(self, argv: list[str], timeout: float, cwd: str) -> ExecResult:
        if self.host_scratch is None:
            self.start()
        # No `timeout` inside: killing bwrap at the deadline tears down the whole pid namespace,
        # which is exact and saves a process per call.
        argv = argv[:4] + ["0"] + argv[5:]
        command = self._prlimit_argv(timeout) + self._bwrap_argv(argv, cwd)
        return run_process(self, command, timeout, cgroup_oom=False, grace=0.0)

    def read_file(self, path: str, max_bytes: int = 1 << 20) -> bytes | None:
        if self.host_scratch is None:
            return None
        if not (path == SCRATCH or path.startswith(SCRATCH + "/")):
            return None  # /tmp is private to each call
        return read_confined(self.host_scratch, path[len(SCRATCH) :].lstrip("/"), max_bytes)

    def info(self) -> SandboxInfo:
        s = self.settings
        return SandboxInfo(
            backend="bwrap",
            isolation="namespaces",
            label="bwrap · isolated (no cgroups)",
            image=None,
            limits=s.describe_limits(),
            details=[
                "no network (only lo), own pid/ipc/uts namespaces",
                "system files read-only; project read-only at /workspace; no home, no docker.sock",
                f"writable /scratch (a host temp dir, removed at the end) and /tmp ({s.tmp_mb} MiB)",
                f"runs as uid {s.uid} with no capabilities",
                "limits are rlimits: memory is address space, processes count per uid",
            ],
        )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_session(sid: int) -> None:
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                os.kill(int(stat.split("/")[2]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def run_process(sandbox: Sandbox, command: list[str], timeout: float, *, cgroup_oom: bool, cwd: str | None = None,
                env: dict[str, str] | None = None, grace: float = GRACE_S, kill_session: bool = False) -> ExecResult:  # fmt: skip
    """Run ``command`` in its own session with capped streams and a host-side deadline."""
    out = OutputCapture(sandbox.settings.max_output_bytes)
    err = OutputCapture(sandbox.settings.max_output_bytes)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            cwd=cwd,
            env=env if env is not None else {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    except OSError as exc:
        raise SandboxError(f"cannot start the sandbox: {exc}") from exc
    sandbox._proc = proc  # type: ignore[attr-defined]

    def pump(stream, capture: OutputCapture) -> None:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            capture.feed(chunk)

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    killed_by_host = False
    try:
        proc.wait(timeout + grace)
    except subprocess.TimeoutExpired:
        killed_by_host = True
        _kill_group(proc)
        proc.wait()
    finally:
        if proc.poll() is None:  # pragma: no cover - interrupted
            _kill_group(proc)
    if kill_session:
        _kill_session(proc.pid)  # leftovers that kept the session (unsandboxed runs)
    for reader in readers:
        reader.join(5)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    sandbox._proc = None  # type: ignore[attr-defined]
    return sandbox._finish(out, err, proc.returncode, started, timeout, killed_by_host=killed_by_host, cgroup_oom=cgroup_oom)


def read_confined(root: Path, relative: str, max_bytes: int) -> bytes | None:
    """Read ``root/relative`` without following a symlink out of ``root`` (sandbox-made links)."""
    root = root.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        return None
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not os.path.isfile(f"/proc/self/fd/{fd}") and not Path(target).is_file():
            return None
        return handle.read(max_bytes)


def _force_rmtree(path: Path) -> None:
    def onerror(func, failed, _exc):  # a sandbox may leave directories without write permission
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
            func(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)
