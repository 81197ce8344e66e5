"""`assistant index` on a terminal shows progress bars for files and chunks (and none when piped)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_progress_bars_on_a_terminal(project, settings):
    (project / ".assistant").mkdir(exist_ok=True)
    (project / ".assistant/settings.toml").write_text(f'[index]\ncache_dir = "{settings.cache_dir}"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real CLI with a terminal on stdout and stderr
        os.execve(sys.executable, [sys.executable, "-m", "assistant", "index", str(project)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    output = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    screen = output.decode(errors="replace").replace("\r", "\n")
    assert " files: 100%" in screen and "7/7" in screen
    assert "chunks: 100%" in screen
    assert "indexed 7 files" in screen
    # piped (CI, scripts): the summary line only
    (project / "pkg/new.py").write_text("def fresh():\n    return 1\n")
    piped = subprocess.run([sys.executable, "-m", "assistant", "index", str(project)], env=env,
                           capture_output=True, text=True, check=True)
    assert piped.stderr == "" and piped.stdout.startswith("indexed 8 files (1 changed")
