"""The CLI edge: one clear line and the right exit code."""

from __future__ import annotations

import subprocess
import sys

from assistant.cli import main


def test_unknown_subcommand_is_one_line_exit_2(capsys):
    try:
        code = main(["no-such-command"])
    except SystemExit as exc:  # argparse exits
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("assistant: error:")


def test_python_dash_m_shows_help():
    out = subprocess.run(
        [sys.executable, "-m", "assistant", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: assistant" in out.stdout
