"""`assistant sandbox ...` as a user runs it: status, build, run, tool, undo, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import SandboxError
from sandbox.factory import open_sandbox
from sandbox.host_backend import HostSandbox
from sandbox.limits import SandboxSettings

REPO = Path(__file__).resolve().parents[2]


def assistant(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=300,
    )


def use_image(project: Path, image: str) -> None:
    (project / ".assistant").mkdir(exist_ok=True)
    (project / ".assistant" / "settings.toml").write_text(
        f'[sandbox]\nimage = "{image}"\nmemory_mb = 256\ntimeout_s = 10\n'
    )


def test_status_shows_backend_isolation_image_and_limits(sample_project, sandbox_image):
    use_image(sample_project, sandbox_image)
    done = assistant("sandbox", "status", cwd=sample_project)
    assert done.returncode == 0, done.stderr
    assert "backend    docker" in done.stdout and "isolation  container" in done.stdout
    assert f"image      {sandbox_image} (present)" in done.stdout
    assert "memory 256 MiB (no swap)" in done.stdout and "timeout 10 s per call" in done.stdout
    report = json.loads(assistant("sandbox", "status", "--json", cwd=sample_project).stdout)
    assert report["backend"] == "docker" and report["limits"]["memory"] == "256 MiB (no swap)"


def test_status_without_an_engine_shows_the_fallback(sample_project, bwrap_ready):
    done = assistant("sandbox", "status", cwd=sample_project, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 0, done.stderr
    assert "backend    bwrap" in done.stdout and "isolation  namespaces" in done.stdout
    assert "docker     unavailable: no Docker engine answers at unix:///nonexistent.sock" in done.stdout


def test_build_reuses_the_offline_image_and_records_it(tmp_path, sandbox_image):
    project = tmp_path / "fresh"
    project.mkdir()
    done = assistant("sandbox", "build", "--offline", "--no-docs", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == sandbox_image
    assert f'image = "{sandbox_image}"' in (project / ".assistant" / "settings.toml").read_text()


def test_build_with_requirements_layers_packages_into_a_project_image(tmp_path, sandbox_image, docker_client):
    project = tmp_path / "needs-six"
    project.mkdir()
    project.chmod(0o755)
    (project / "requirements.txt").write_text("six==1.17.0\n")
    use_image(project, sandbox_image)
    done = assistant("sandbox", "build", "--no-docs", "--requirements", "requirements.txt", cwd=project)
    assert done.returncode == 0, done.stderr
    image = done.stdout.strip()
    assert image.startswith("assistant-sandbox-project:")
    ran = assistant("sandbox", "run", "python3 -c 'import six; print(six.__version__)'", cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "1.17.0\n"


def test_run_passes_output_and_exit_status_through(sample_project, sandbox_image):
    use_image(sample_project, sandbox_image)
    done = assistant("sandbox", "run", "echo out; echo err >&2; exit 7", cwd=sample_project)
    assert (done.returncode, done.stdout, done.stderr) == (7, "out\n", "err\n")


def test_tool_command_runs_tests_and_refuses_writes_without_a_terminal(sample_project, sandbox_image, snapshot):
    use_image(sample_project, sandbox_image)
    before = snapshot(sample_project)
    done = assistant("sandbox", "tool", "run_tests", "{}", cwd=sample_project)
    assert done.returncode == 1
    assert json.loads(done.stdout)["counts"]["failed"] == 2
    write = assistant("sandbox", "tool", "write_file", '{"path": "x.py", "content": "1"}', cwd=sample_project)
    assert write.returncode == 1 and "declined" in json.loads(write.stdout)["error"]
    assert snapshot(sample_project) == before
    listing = json.loads(assistant("sandbox", "tool", "list", cwd=sample_project).stdout)
    assert {t["name"]: t["kind"] for t in listing}["apply_patch"] == "write"


@pytest.mark.parametrize(
    ("args", "settings", "expected", "code"),
    [
        (["sandbox", "run"], None, "the following arguments are required: COMMAND", 2),
        (["sandbox", "frobnicate"], None, "invalid choice: 'frobnicate'", 2),
        (["sandbox", "--project", "/no/such/dir", "status"], None, "project folder /no/such/dir does not exist", 2),
        (["sandbox", "status"], "[sandbox]\nmemory_mb = -5\n", "sandbox.memory_mb = -5 is out of range", 1),
        (["sandbox", "status"], "[sandbox]\nbakend = 'docker'\n", "unknown key(s) in [sandbox]: bakend", 1),
        (["sandbox", "status"], "[sandbox]\nbackend = 'vm'\n", "sandbox.backend 'vm' is unknown", 1),
        (["sandbox", "run", "true"], "[sandbox]\nimage = 'assistant-sandbox:missing'\n",
         "sandbox image 'assistant-sandbox:missing' is not on this machine (run `assistant sandbox build`", 1),
        (["sandbox", "build", "--requirements", "nope.txt"], None, "requirements file nope.txt does not exist", 2),
        (["sandbox", "undo"], None, "nothing to undo", 1),
        (["sandbox", "tool", "nope"], None, "unknown tool 'nope'", 1),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(sample_project, docker_client, args, settings, expected, code):
    if settings:
        (sample_project / ".assistant").mkdir(exist_ok=True)
        (sample_project / ".assistant" / "settings.toml").write_text(settings)
    done = assistant(*args, cwd=sample_project)
    assert done.returncode == code
    if args[-1] == "nope":
        assert expected in json.loads(done.stdout)["error"]
        return
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assistant: error:"), done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr


def test_a_dead_engine_for_run_is_one_line(sample_project):
    (sample_project / ".assistant").mkdir(exist_ok=True)
    (sample_project / ".assistant" / "settings.toml").write_text("[sandbox]\nbackend = 'docker'\ndocker_host = 'unix:///nonexistent.sock'\n")
    done = assistant("sandbox", "run", "true", cwd=sample_project)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "assistant: error: no Docker engine answers at unix:///nonexistent.sock "
        '(start Docker (dockerd), or set sandbox.backend = "bwrap")'
    )


def test_without_any_sandbox_code_runs_only_when_confirmed(sample_project):
    asked: list[str] = []
    refusing = open_sandbox(SandboxSettings(backend="none"), sample_project)
    result = refusing.run("echo hi")
    assert result.refused and result.exit_code is None and "no sandbox is available" in result.stderr
    assert refusing.info().isolation == "none" and refusing.info().warning
    refusing.close()
    box = HostSandbox(SandboxSettings(backend="none", timeout_s=5), sample_project,
                      confirm=lambda code, language: asked.append(code) or True)  # fmt: skip
    box.start()
    try:
        result = box.run("echo confirmed; sleep 100 & echo $OPENAI_API_KEY", timeout=2)
        assert result.stdout == "confirmed\n\n" and asked == ["echo confirmed; sleep 100 & echo $OPENAI_API_KEY"]
        assert box.run("while True: pass", "python", timeout=1).timed_out
    finally:
        box.close()


def test_settings_reject_unsafe_values():
    with pytest.raises(SandboxError, match="non-root"):
        SandboxSettings(user="0")
    with pytest.raises(SandboxError, match="out of range"):
        SandboxSettings(pids=True)
    assert SandboxSettings().uid != 0
