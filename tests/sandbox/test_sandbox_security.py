"""The security suite: each attack from the issue, once against Docker and once against bwrap."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import threading
import tracemalloc
from pathlib import Path

import pytest

FORK_BOMB = """
import os, time
hit = False
while True:
    try:
        os.fork()
    except OSError:
        if not hit:
            hit = True
            os.write(1, b"fork refused\\n")
        time.sleep(0.05)
"""

PROCESSES = """
import os
rows = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            stat = open(f"/proc/{pid}/stat").read()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            state = stat[stat.rindex(")") + 2]
            rows.append((int(pid), comm, state))
        except OSError:
            pass
print(__import__("json").dumps(rows))
"""


def processes(sandbox) -> list[tuple[int, str, str]]:
    result = sandbox.run(PROCESSES, "python")
    assert result.exit_code == 0, result.stderr
    return [tuple(row) for row in json.loads(result.stdout)]


def leftover(sandbox) -> list[tuple[int, str, str]]:
    """Processes other than the backend's own (init, keep-alive) and the lister itself."""
    own = {"docker-init", "sh", "cat", "bwrap", "timeout", "python3", "setpriv"}
    return [p for p in processes(sandbox) if p[1] not in own or p[2] == "Z"]


def test_fork_bomb_is_bounded_killed_and_the_host_stays_responsive(sandbox):
    result = sandbox.run(FORK_BOMB, "python", timeout=3)
    assert result.timed_out
    assert "fork refused" in result.stdout  # the process limit stopped it growing
    assert subprocess.run(["true"]).returncode == 0  # the host can still start processes
    assert sandbox.run("echo alive").stdout == "alive\n"  # and so can the sandbox
    assert leftover(sandbox) == []


def test_two_gib_under_a_256_mib_limit_is_reported_as_out_of_memory(sandbox):
    result = sandbox.run("x = b'x' * (2 * 1024**3)\nprint('allocated')", "python")
    assert result.oom_killed
    assert result.exit_code != 0
    assert "allocated" not in result.stdout
    assert not result.timed_out


def test_infinite_loop_is_killed_at_the_timeout_plus_at_most_one_second(sandbox):
    result = sandbox.run("while True:\n    pass", "python", timeout=2)
    assert result.timed_out
    assert 2.0 <= result.duration_s <= 3.0
    assert leftover(sandbox) == []


def _host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " lo " not in line and "inet " in line]


@pytest.fixture
def host_listeners():
    """TCP listeners on the host's loopback and on one of its own non-loopback addresses."""
    servers = []
    addresses = ["127.0.0.1"] + _host_addresses()[:1]
    for address in addresses:
        server = socket.socket()
        server.bind((address, 0))
        server.listen()
        servers.append(server)
    accepted = []

    def accept(server):
        try:
            conn, _ = server.accept()
            accepted.append(conn)
        except OSError:
            pass

    for server in servers:
        threading.Thread(target=accept, args=(server,), daemon=True).start()
    yield [s.getsockname() for s in servers], accepted
    for server in servers:
        server.close()


NETWORK_PROBE = """
import json, socket, sys
targets = json.loads(sys.argv[1])
out = {"interfaces": [name for _, name in socket.if_nameindex()]}
try:
    socket.getaddrinfo("pypi.org", 443)
    out["dns"] = "resolved"
except OSError as exc:
    out["dns"] = type(exc).__name__
out["connect"] = []
for host, port in targets:
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        out["connect"].append([host, "connected"])
    except OSError as exc:
        out["connect"].append([host, exc.errno])
print(json.dumps(out))
"""


def test_network_only_loopback_no_dns_no_host_listener_no_packets_out(sandbox, host_listeners):
    targets, accepted = host_listeners
    assert len(targets) == 2, "the host needs a non-loopback address for this test"
    result = sandbox.run(NETWORK_PROBE, "python", args=[json.dumps(targets)])
    assert result.exit_code == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["interfaces"] == ["lo"]
    assert probe["dns"] != "resolved"
    loopback, outside = probe["connect"]
    assert loopback[1] == errno.ECONNREFUSED  # the sandbox's own lo: the host's listener is not there
    assert outside[1] == errno.ENETUNREACH  # no route at all: the kernel sent no packet
    assert accepted == []


def test_writes_to_root_usr_and_workspace_are_refused(sandbox, sample_project, snapshot):
    before = snapshot(sample_project)
    script = (
        "for f in /evil /usr/evil /workspace/evil /workspace/calc/ops.py /workspace/.git/HEAD; do "
        '  (echo pwned > "$f") 2>/dev/null && echo "WROTE $f"; done; '
        "rm -rf /workspace/calc 2>/dev/null; mkdir /workspace/new 2>/dev/null && echo MKDIR; "
        "echo ok > /scratch/mine && cat /scratch/mine"
    )
    result = sandbox.run(script)
    assert "WROTE" not in result.stdout and "MKDIR" not in result.stdout
    assert result.stdout.strip().endswith("ok")  # the scratch space is writable
    assert snapshot(sample_project) == before


def test_host_secrets_are_not_visible(sandbox, tmp_path, monkeypatch):
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text("HOST-SECRET-CONTENT")
    secret_file.chmod(0o644)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-key")
    script = (
        f"cat {secret_file} 2>&1; env; ls -la /var/run/docker.sock /run/docker.sock 2>&1; "
        "cat /root/.bash_history /etc/shadow 2>&1; ls /home /root 2>&1"
    )
    result = sandbox.run(script)
    text = result.stdout + result.stderr
    assert "HOST-SECRET-CONTENT" not in text
    assert "sk-host-secret-key" not in text and "OPENAI_API_KEY" not in text
    assert "docker.sock" in text and "No such file" in text
    assert "srw" not in text  # no socket listed


def test_a_symlink_in_the_project_does_not_leak_the_host_file(sandbox, sample_project, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("OUTSIDE-THE-PROJECT")
    secret.chmod(0o644)
    (sample_project / "leak").symlink_to(secret)
    (sample_project / "leak_relative").symlink_to(Path("..") / "outside.txt")
    result = sandbox.run("cat /workspace/leak /workspace/leak_relative 2>&1; echo done")
    assert "OUTSIDE-THE-PROJECT" not in result.stdout + result.stderr
    assert result.stdout.strip().endswith("done")


def test_200_mb_of_output_is_capped_and_memory_stays_bounded(sandbox):
    tracemalloc.start()
    try:
        result = sandbox.run("head -c 200000000 /dev/zero | tr '\\0' x; echo tail-marker", timeout=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.truncated
    assert result.exit_code == 0
    assert len(result.stdout) < 70 * 1024
    assert "bytes of output cut" in result.stdout
    assert result.stdout.rstrip().endswith("tail-marker")  # the end of the output is kept
    assert peak < 20 * 1024 * 1024


def test_no_zombies_or_orphans_are_left_behind(sandbox):
    script = (
        "sleep 300 &\n"
        "(setsid sleep 301 &)\n"
        "nohup sleep 302 >/dev/null 2>&1 &\n"
        "python3 -c 'import os; [os.fork() or os._exit(0) for _ in range(3)]; print(\"zombies made\")'\n"
    )
    result = sandbox.run(script)
    assert result.exit_code == 0 and "zombies made" in result.stdout
    assert leftover(sandbox) == []


def test_the_next_call_after_a_timeout_finds_a_clean_sandbox(sandbox):
    result = sandbox.run("sleep 100 & sleep 100 & wait", timeout=1)
    assert result.timed_out
    assert leftover(sandbox) == []
    assert sandbox.run("echo fine").stdout == "fine\n"


def test_code_runs_as_a_non_root_user_without_capabilities(sandbox):
    result = sandbox.run("id -u; grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status")
    uid, *fields = result.stdout.splitlines()
    status = dict(line.split(":\t") for line in fields)
    assert uid != "0"
    assert status == {"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "NoNewPrivs": "1"}
