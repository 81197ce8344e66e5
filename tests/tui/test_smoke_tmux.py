"""Smoke test: the real ``assistant`` command in a real terminal (tmux), read back with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.ci import unavailable
from tests.memorised_model import HELLO, make_project

pytestmark = pytest.mark.slow


def _screen(tmux: list[str]) -> str:
    done = subprocess.run([*tmux, "capture-pane", "-p", "-t", "smoke"], capture_output=True, text=True, check=False)
    return done.stdout


def _wait(tmux: list[str], needle: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(tmux)
        if needle in screen:
            return screen
        time.sleep(0.25)
    raise AssertionError(f"{needle!r} never appeared; the screen was:\n{_screen(tmux)}")


def test_the_app_in_a_real_terminal(tmp_path, memorised_model):
    path = shutil.which("tmux")
    if path is None:
        unavailable("tmux is not installed")
    project = make_project(tmp_path / "project", {"backend": "none"})
    tmux = [path, "-S", str(tmp_path / "tmux.sock")]  # a private server: never the user's sessions
    env = {name: os.environ[name] for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "HF_HUB_OFFLINE", "PATH", "HOME")
           if name in os.environ}
    command = f"cd {project} && {sys.executable} -m assistant --model {memorised_model}; echo EXITED $?; sleep 30"
    subprocess.run([*tmux, "new-session", "-d", "-s", "smoke", "-x", "110", "-y", "32",
                    *[arg for name, value in env.items() for arg in ("-e", f"{name}={value}")],
                    "env", "OMP_NUM_THREADS=1", "TERM=xterm-256color", "bash", "-c", command], check=True)
    try:
        screen = _wait(tmux, "NO SANDBOX")  # started: the status bar is drawn
        assert "language_model_last.pth · dense · float32" in screen and "index: none" in screen
        subprocess.run([*tmux, "send-keys", "-t", "smoke", "-l", HELLO], check=True)
        subprocess.run([*tmux, "send-keys", "-t", "smoke", "Enter"], check=True)
        _wait(tmux, "Hello! I am a tiny model trained for these tests.")
        _wait(tmux, "tok/s")  # the reply's stats and the status bar's speed, once it has finished
        subprocess.run([*tmux, "send-keys", "-t", "smoke", "C-q"], check=True)
        _wait(tmux, "EXITED 0", timeout=60)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
