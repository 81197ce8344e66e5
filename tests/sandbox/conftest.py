"""Sandbox fixtures: the real Docker engine with a locally built image, and real bubblewrap.

Docker and bwrap tests are never skipped in CI (CI=true): a missing engine fails loudly there.
Locally they skip only when the engine or bwrap is truly absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox import SandboxError
from sandbox.limits import SandboxSettings
from tests.ci import unavailable

TEST_LIMITS = dict(memory_mb=256, pids=64, timeout_s=10.0, tmp_mb=32, scratch_mb=64)


@pytest.fixture(scope="session")
def docker_client():
    from sandbox.docker_backend import connect

    try:
        client = connect(SandboxSettings(), timeout=600)
    except SandboxError as exc:
        unavailable(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The offline image (debootstrap + docker import), built once and cached by tag and recipe."""
    from sandbox.image import ensure_offline_image

    return ensure_offline_image(docker_client, log=lambda line: print(line))


@pytest.fixture(scope="session")
def bwrap_ready() -> None:
    from sandbox.factory import bwrap_works

    ok, why = bwrap_works()
    if not ok:
        unavailable(f"bubblewrap does not work here: {why}")


def make_sample_project(root: Path) -> Path:
    """A small project with passing and failing tests, lint and security findings, ignored files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "calc").mkdir()
    (root / "calc" / "__init__.py").write_text("")
    (root / "calc" / "ops.py").write_text(
        "def add(a, b):\n"
        "    return a + b\n"
        "\n"
        "\n"
        "def divide(a, b):\n"
        "    return a / b\n"
        "\n"
        "\n"
        "def mean(values):\n"
        "    total = 0\n"
        "    for value in values:\n"
        "        total += value\n"
        "    return divide(total, len(values))\n"
    )
    (root / "tests").mkdir()
    (root / "tests" / "test_ops.py").write_text(
        "from calc.ops import add, mean\n"
        "\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n"
        "def test_mean():\n    assert mean([1, 2, 3]) == 2\n\n"
        "def test_mean_of_nothing():\n    assert mean([]) == 0\n\n"
        "def test_add_wrong():\n    assert add(2, 2) == 5\n"
    )
    (root / "tools.py").write_text(
        "import os\nimport subprocess\nimport sys\n\n\n"
        "def run(cmd):\n    return subprocess.call(cmd, shell=True)\n\n\n"
        "def grade(n):\n"
        + "".join(f"    if n == {i}:\n        return {i}\n" for i in range(12))
        + "    return eval(str(n))\n"
    )
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("needle = 1\n")
    (root / "debug.log").write_text("needle in a log\n")
    (root / "README.md").write_text("# calc\nA needle in the readme.\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the sandbox's uid when tests run as root
    return root


def take_snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes (and every link's target), to prove nothing was modified."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = b"->" + os.readlink(path).encode()
        elif path.is_file():
            state[rel] = path.read_bytes()
        else:
            state[rel] = b"<dir>"
    return state


@pytest.fixture
def snapshot():
    return take_snapshot


@pytest.fixture
def sample_project(tmp_path) -> Path:
    return make_sample_project(tmp_path / "project")


@pytest.fixture
def docker_settings(sandbox_image) -> SandboxSettings:
    return SandboxSettings(backend="docker", image=sandbox_image, **TEST_LIMITS)


@pytest.fixture
def bwrap_settings(bwrap_ready) -> SandboxSettings:
    return SandboxSettings(backend="bwrap", **TEST_LIMITS)


@pytest.fixture(params=["docker", "bwrap"])
def backend_settings(request) -> SandboxSettings:
    """Runs a test once against the real Docker engine and once against bubblewrap."""
    return request.getfixturevalue(f"{request.param}_settings")


@pytest.fixture
def sandbox(backend_settings, sample_project):
    from sandbox.factory import open_sandbox

    box = open_sandbox(backend_settings, sample_project)
    yield box
    box.close()
