"""The bwrap backend as real users run it: not root, so inside a user namespace (CI runs as root,
so this test drops to uid 65534 to exercise that path for real)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.ci import unavailable

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
from sandbox.bwrap_backend import BwrapSandbox
from sandbox.limits import SandboxSettings
bomb = "import os, time\nhit = False\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        if not hit:\n            hit = True\n            os.write(1, b'fork refused\\n')\n        time.sleep(0.05)\n"
out = {}
with BwrapSandbox(SandboxSettings(memory_mb=256, pids=64, timeout_s=5), PROJECT) as box:
    out["id"] = box.run("id -u; cat a.txt; echo x > a.txt").to_dict()
    out["bomb"] = box.run(bomb, "python", timeout=2).to_dict()
    out["oom"] = box.run("x = b'x' * (2 * 1024**3)", "python").to_dict()
    out["net"] = box.run("import socket; print([n for _, n in socket.if_nameindex()])", "python").to_dict()
    out["left"] = box.run("ls /proc | grep -c '^[0-9]'").to_dict()
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="already unprivileged: the rest of the suite covers this path")
def test_bwrap_as_an_unprivileged_user(bwrap_ready):
    if not Path("/usr/bin/python3").exists() or shutil.which("setpriv") is None:
        unavailable("needs /usr/bin/python3 and setpriv")
    work = Path(tempfile.mkdtemp(prefix="bwrap-user-"))
    try:
        work.chmod(0o755)
        for package in ("sandbox", "common"):
            shutil.copytree(REPO / package, work / "code" / package, ignore=shutil.ignore_patterns("__pycache__"))
        project = work / "project"
        project.mkdir()
        (project / "a.txt").write_text("hello\n")
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
             SCRIPT.replace("PROJECT", repr(str(project)))],
            capture_output=True, text=True, timeout=120, cwd=work,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(work / "code"), "HOME": str(work)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert out["id"]["stdout"] == "65534\nhello\n" and "Read-only file system" in out["id"]["stderr"]
    assert out["bomb"]["timed_out"] and "fork refused" in out["bomb"]["stdout"]
    assert out["oom"]["oom_killed"]
    assert out["net"]["stdout"] == "['lo']\n"
    assert int(out["left"]["stdout"]) <= 6  # bwrap's init, sh, bash, ls, grep: nothing left over
