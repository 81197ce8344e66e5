"""The Docker backend: one warm, hardened container per session; each call is an ``exec`` in it.

Hardening: no network, read-only root filesystem, the project bound read-only at /workspace,
size-capped tmpfs for /tmp and /scratch, all capabilities dropped, no-new-privileges, an init
process (no zombies), pids/memory(+swap)/CPU limits, nofile/fsize ulimits, model code as a
non-root user. The Docker socket is never mounted.

The container dies with the session even on SIGKILL: its keep-alive process reads stdin from an
attach connection this process holds (``StdinOnce``), so when the process dies the connection
closes, the keep-alive exits and Docker removes the container (``auto_remove``). Containers carry
labels naming their owner; leftovers whose owner is gone are removed at start-up anyway.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sandbox import SandboxError
from sandbox.base import SCRATCH, WORKSPACE, ExecResult, OutputCapture, Sandbox, SandboxInfo
from sandbox.limits import SandboxSettings

LABEL = "assistant.sandbox"
GRACE_S = 2.0  # host-side deadline after the in-container timeout, should the wrapper be stuck
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": SCRATCH,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


def _engine_gone(exc: BaseException) -> SandboxError:
    return SandboxError(
        f"the Docker engine stopped answering ({type(exc).__name__})",
        "start Docker again; the session's sandbox is gone",
    )


def connect(settings: SandboxSettings, timeout: float = 10.0) -> Any:
    """A docker client that answered a ping, or SandboxError with a hint."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise SandboxError("the 'docker' Python package is missing", "pip install docker") from exc
    try:
        if settings.docker_host:
            client = docker.DockerClient(base_url=settings.docker_host, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, requests errors, socket errors
        where = settings.docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
        raise SandboxError(
            f"no Docker engine answers at {where}",
            "start Docker (dockerd), or set sandbox.backend = \"bwrap\"",
        ) from exc
    return client


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """The kernel's start time of ``pid`` (tells a live owner from a reused pid), or ''."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {
        f"{LABEL}.owner.host": socket.gethostname(),
        f"{LABEL}.owner.boot": _boot_id(),
        f"{LABEL}.owner.pid": str(pid),
        f"{LABEL}.owner.start": _process_start(pid),
    }


def _owner_alive(labels: dict[str, str]) -> bool:
    if labels.get(f"{LABEL}.owner.boot") != _boot_id():
        return False
    try:
        pid = int(labels.get(f"{LABEL}.owner.pid", ""))
    except ValueError:
        return False
    start = _process_start(pid)
    return bool(start) and start == labels.get(f"{LABEL}.owner.start")


def find_leftovers(client: Any) -> list[dict]:
    """Sandbox containers on this host whose owning assistant process is gone."""
    found = []
    for entry in client.api.containers(all=True, filters={"label": LABEL}):
        labels = entry.get("Labels") or {}
        if labels.get(f"{LABEL}.owner.host") != socket.gethostname():
            continue  # another machine's session on a shared engine: not ours to judge
        if not _owner_alive(labels):
            found.append(entry)
    return found


def remove_leftovers(client: Any) -> list[str]:
    """Remove containers left by crashed sessions; return their short ids."""
    import docker

    removed = []
    for entry in find_leftovers(client):
        try:
            client.api.remove_container(entry["Id"], force=True)
            removed.append(entry["Id"][:12])
        except docker.errors.APIError:
            pass  # already going away (auto_remove) or removed by another session
    return removed


class DockerSandbox(Sandbox):
    """A session's container. Thread-safe: calls are serialised."""

    name = "docker"

    def __init__(self, settings: SandboxSettings, project: str | Path, *, client: Any = None) -> None:
        super().__init__(settings, project)
        self._client = client
        self._container_id: str | None = None
        self._keepalive: Any = None
        self.session_id = uuid.uuid4().hex[:12]
        self.removed_leftovers: list[str] = []
        self.restarts = 0

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def container_id(self) -> str | None:
        return self._container_id

    def start(self) -> None:
        if self._container_id:
            return
        if self._client is None:
            self._client = connect(self.settings, timeout=max(60.0, self.settings.timeout_s + 30))
        self.removed_leftovers = remove_leftovers(self._client)
        self._check_image()
        self._create()
        atexit.register(self.close)

    def _check_image(self) -> None:
        import docker

        try:
            self._client.api.inspect_image(self.settings.image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(
                f"sandbox image '{self.settings.image}' is not on this machine",
                "run `assistant sandbox build` to pull or build it",
            ) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot inspect sandbox image '{self.settings.image}': {exc.explanation}") from exc
        except Exception as exc:
            raise _engine_gone(exc) from exc

    def _create(self) -> None:
        import docker

        s = self.settings
        api = self._client.api
        host_config = api.create_host_config(
            auto_remove=True,
            network_mode="none",
            read_only=True,
            binds={str(self.project): {"bind": WORKSPACE, "mode": "ro"}},
            tmpfs={
                "/tmp": f"rw,exec,nosuid,nodev,size={s.tmp_mb}m,mode=1777",
                SCRATCH: f"rw,exec,nosuid,nodev,size={s.scratch_mb}m,mode=1777",
            },
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            pids_limit=s.pids,
            mem_limit=f"{s.memory_mb}m",
            memswap_limit=f"{s.memory_mb}m",
            nano_cpus=int(s.cpus * 1e9),
            ulimits=[
                docker.types.Ulimit(name="nofile", soft=s.nofile, hard=s.nofile),
                docker.types.Ulimit(name="fsize", soft=s.fsize_mb << 20, hard=s.fsize_mb << 20),
            ],
        )
        labels = {LABEL: "1", f"{LABEL}.session": self.session_id, f"{LABEL}.project": str(self.project)}
        labels.update(_owner_labels())
        try:
            created = api.create_container(
                s.image,
                # The keep-alive: reads stdin until this process's attach connection closes.
                command=["sh", "-c", "cat >/dev/null"],
                user="0:0",  # idle and capability-less; model code runs as settings.user via exec
                stdin_open=True,  # with detach=False this sets StdinOnce: EOF when we go away
                environment=ENV,
                working_dir=WORKSPACE,
                hostname="sandbox",
                labels=labels,
                host_config=host_config,
                network_disabled=True,
            )
            container_id = created["Id"]
            self._keepalive = api.attach_socket(container_id, params={"stdin": 1, "stream": 1})
            api.start(container_id)
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(
                f"sandbox image '{s.image}' is not on this machine", "run `assistant sandbox build`"
            ) from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot start the sandbox container: {exc.explanation or exc}") from exc
        except Exception as exc:
            raise _engine_gone(exc) from exc
        self._container_id = container_id

    def _remove_container(self) -> None:
        container_id, self._container_id = self._container_id, None
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            try:
                keepalive.close()
            except Exception:
                pass
        if container_id and self._client is not None:
            try:
                self._client.api.remove_container(container_id, force=True)
            except Exception:
                pass  # gone already (auto_remove), or the engine is gone: the next start cleans up

    def restart(self) -> None:
        """Replace the container with a fresh one (scratch and /tmp start empty)."""
        self._remove_container()
        self._create()
        self.restarts += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._remove_container()
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    # -- calls -----------------------------------------------------------------------------
    def _exec_create(self, argv: list[str], cwd: str) -> str:
        return self._client.api.exec_create(
            self._container_id, argv, user=self.settings.uid_gid, workdir=cwd, stdout=True, stderr=True
        )["Id"]

    def _execute(self, argv: list[str], timeout: float, cwd: str) -> ExecResult:
        import docker

        if not self._container_id:
            self.start()
        note = ""
        started = time.monotonic()
        try:
            try:
                exec_id = self._exec_create(argv, cwd)
            except docker.errors.APIError as exc:
                if exc.status_code not in (404, 409):  # 404 gone, 409 not running
                    raise
                self.restart()
                note = "the sandbox container had stopped; a fresh one was started (scratch files were lost)"
                exec_id = self._exec_create(argv, cwd)
            stream = self._client.api.exec_start(exec_id, stream=True, demux=True)
        except docker.errors.APIError as exc:
            raise SandboxError(f"the sandbox could not run the call: {exc.explanation or exc}") from exc
        except SandboxError:
            raise
        except Exception as exc:
            raise _engine_gone(exc) from exc

        out = OutputCapture(self.settings.max_output_bytes)
        err = OutputCapture(self.settings.max_output_bytes)
        failure: list[BaseException] = []
        done = threading.Event()

        def pump() -> None:
            try:
                for chunk_out, chunk_err in stream:
                    if chunk_out:
                        out.feed(chunk_out)
                    if chunk_err:
                        err.feed(chunk_err)
            except Exception as exc:  # connection lost mid-call
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=pump, name="sandbox-exec-pump", daemon=True).start()
        killed_by_host = False
        if not done.wait(timeout + GRACE_S):
            killed_by_host = True
            note = self._kill_everything()
            done.wait(10)
        if failure and not killed_by_host:
            raise _engine_gone(failure[0])
        try:
            exit_code = self._client.api.exec_inspect(exec_id).get("ExitCode")
        except Exception as exc:
            if killed_by_host:
                exit_code = None
            else:
                raise _engine_gone(exc) from exc
        return self._finish(out, err, exit_code, started, timeout, killed_by_host=killed_by_host, note=note)

    def _kill_everything(self) -> str:
        """The wrapper did not end the call in time: kill every sandbox process, or restart."""
        try:
            self._client.api.exec_start(self._exec_create(["sh", "-c", "kill -9 -1"], "/"))
            return "the call overran its timeout and was killed"
        except Exception:
            self.restart()
            return "the call overran its timeout; the sandbox container was replaced (scratch files were lost)"

    def read_file(self, path: str, max_bytes: int = 1 << 20) -> bytes | None:
        import docker

        if not self._container_id:
            self.start()
        script = 'test -f "$1" || exit 3; head -c "$2" "$1"'
        try:
            result = self._client.api.exec_create(
                self._container_id, ["sh", "-c", script, "sh", path, str(max_bytes)], user=self.settings.uid_gid
            )
            data = self._client.api.exec_start(result["Id"], demux=True)
            code = self._client.api.exec_inspect(result["Id"]).get("ExitCode")
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot read {path} from the sandbox: {exc.explanation or exc}") from exc
        except Exception as exc:
            raise _engine_gone(exc) from exc
        if code != 0:
            return None
        return (data[0] or b"") if isinstance(data, tuple) else (data or b"")

    def info(self) -> SandboxInfo:
        s = self.settings
        return SandboxInfo(
            backend="docker",
            isolation="container",
            label="docker · isolated",
            image=s.image,
            limits=s.describe_limits(),
            details=[
                "no network (only lo)",
                "read-only root filesystem; project read-only at /workspace",
                f"writable /scratch ({s.scratch_mb} MiB) and /tmp ({s.tmp_mb} MiB), gone when the session ends",
                "all capabilities dropped, no-new-privileges, init reaps zombies",
                f"runs as uid {s.uid_gid}, never root",
            ],
        )
