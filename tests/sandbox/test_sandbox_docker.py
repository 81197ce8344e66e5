"""The Docker backend's life cycle against the real engine: hardening, warm reuse, restarts,
cleanup after timeouts and crashes, a dead engine mid-session, a missing image."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox import SandboxError
from sandbox.docker_backend import LABEL, DockerSandbox, find_leftovers, remove_leftovers


@pytest.fixture
def docker_sandbox(docker_settings, sample_project):
    box = DockerSandbox(docker_settings, sample_project)
    box.start()
    yield box
    box.close()


def _wait_gone(client, container_id: str, seconds: float = 15) -> bool:
    import docker

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return True
        time.sleep(0.2)
    return False


def test_container_is_hardened(docker_sandbox, docker_client, docker_settings):
    attrs = docker_client.api.inspect_container(docker_sandbox.container_id)
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    assert host["PidsLimit"] == docker_settings.pids
    assert host["Memory"] == docker_settings.memory_mb << 20
    assert host["MemorySwap"] == host["Memory"]  # no swap beyond the memory limit
    assert host["NanoCpus"] == int(docker_settings.cpus * 1e9)
    assert {u["Name"] for u in host["Ulimits"]} == {"nofile", "fsize"}
    assert set(host["Tmpfs"]) == {"/tmp", "/scratch"}
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == {"/workspace"} and mounts["/workspace"]["RW"] is False
    assert not any("docker.sock" in (m.get("Source") or "") for m in attrs["Mounts"])
    assert attrs["Config"]["Labels"][LABEL] == "1"


def test_one_warm_container_serves_every_call(docker_sandbox):
    first = docker_sandbox.container_id
    assert docker_sandbox.run("echo 42 > /scratch/state").exit_code == 0
    assert docker_sandbox.run("cat /scratch/state").stdout == "42\n"
    assert docker_sandbox.container_id == first


def test_a_dead_container_is_replaced_and_the_result_says_so(docker_sandbox, docker_client):
    old = docker_sandbox.container_id
    docker_client.api.kill(old)
    _wait_gone(docker_client, old)
    result = docker_sandbox.run("echo back")
    assert result.stdout == "back\n"
    assert "fresh one was started" in result.note
    assert docker_sandbox.container_id != old


def test_close_removes_the_container(docker_settings, sample_project, docker_client):
    box = DockerSandbox(docker_settings, sample_project)
    box.start()
    container_id = box.container_id
    box.run("true", timeout=1)
    box.close()
    assert _wait_gone(docker_client, container_id)


def test_a_timeout_leaves_the_container_usable_and_nothing_running(docker_sandbox, docker_client):
    result = docker_sandbox.run("sleep 60", timeout=1)
    assert result.timed_out
    top = docker_client.api.top(docker_sandbox.container_id, ps_args="-eo pid,comm")
    commands = [row[-1] for row in top["Processes"]]
    assert "sleep" not in commands


CRASHING_SESSION = """
import sys, time
from sandbox.docker_backend import DockerSandbox
from sandbox.limits import SandboxSettings
box = DockerSandbox(SandboxSettings(image=sys.argv[1]), sys.argv[2])
box.start()
box.run("true")
print(box.container_id, flush=True)
time.sleep(600)
"""


def test_container_goes_away_after_the_assistant_is_killed_with_sigkill(docker_settings, sample_project, docker_client):
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SESSION, docker_settings.image, str(sample_project)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    container_id = proc.stdout.readline().strip()
    assert container_id, "the session did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The keep-alive sees EOF when its owner dies, so the container goes by itself (and were it
    # still there, the next start would remove it: see the leftovers test below).
    assert _wait_gone(docker_client, container_id, 10)


def test_leftovers_from_a_crashed_session_are_removed_at_start(docker_settings, sample_project, docker_client):
    dead = subprocess.Popen(["true"])
    dead.wait()
    labels = {
        LABEL: "1",
        f"{LABEL}.owner.host": socket.gethostname(),
        f"{LABEL}.owner.boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        f"{LABEL}.owner.pid": str(dead.pid),
        f"{LABEL}.owner.start": "1",
    }
    created = docker_client.api.create_container(docker_settings.image, ["sleep", "600"], labels=labels,
                                                 host_config=docker_client.api.create_host_config(network_mode="none"))  # fmt: skip
    docker_client.api.start(created["Id"])
    assert created["Id"] in [c["Id"] for c in find_leftovers(docker_client)]
    box = DockerSandbox(docker_settings, sample_project)
    box.start()
    try:
        assert created["Id"][:12] in box.removed_leftovers
        assert _wait_gone(docker_client, created["Id"], 5)
        assert box.container_id not in [c["Id"] for c in find_leftovers(docker_client)]  # a live session is kept
    finally:
        box.close()
    assert remove_leftovers(docker_client) == []


def test_a_missing_image_is_one_clear_error(docker_settings, sample_project):
    box = DockerSandbox(docker_settings.replace(image="assistant-sandbox:does-not-exist"), sample_project)
    with pytest.raises(SandboxError) as caught:
        box.start()
    assert "is not on this machine" in str(caught.value) and "assistant sandbox build" in str(caught.value)


class SocketProxy:
    """A unix socket that forwards to the real engine until stopped: an engine that dies on demand."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def kill(self) -> None:
        self.server.close()
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self.path.unlink(missing_ok=True)


def test_a_dead_engine_mid_session_gives_a_clear_result(docker_settings, sample_project, tmp_path, docker_client):
    from sandbox.tools import ToolContext, call_tool

    proxy = SocketProxy(tmp_path / "engine.sock")
    box = DockerSandbox(docker_settings.replace(docker_host=f"unix://{tmp_path / 'engine.sock'}"), sample_project)
    box.start()
    container_id = box.container_id
    try:
        assert box.run("echo up").stdout == "up\n"
        proxy.kill()
        with pytest.raises(SandboxError) as caught:
            box.run("echo again")
        assert "Docker engine stopped answering" in str(caught.value)
        result = call_tool("execute_bash", {"command": "echo again"}, ToolContext(sample_project, sandbox=box))
        assert not result.ok and "Docker engine stopped answering" in result.error
    finally:
        box.close()
        proxy.kill()
    assert _wait_gone(docker_client, container_id, 15)  # its keep-alive connection died with the "engine"
