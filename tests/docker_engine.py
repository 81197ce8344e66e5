"""The real Docker engine with the locally built sandbox image, for tests outside tests/sandbox.

In CI (CI=true) a missing engine fails the test: .ci/run installs and starts it. Locally the test
skips, saying why.
"""

from __future__ import annotations

from sandbox import SandboxError
from sandbox.limits import SandboxSettings
from tests.ci import unavailable


def docker_sandbox_settings(timeout_s: float) -> SandboxSettings:
    """Docker settings on the offline image (built once if missing), or fail/skip as above."""
    from sandbox.docker_backend import connect
    from sandbox.image import ensure_offline_image

    try:
        client = connect(SandboxSettings(), timeout=600)
    except SandboxError as exc:
        unavailable(f"no Docker engine: {exc}")
    image = ensure_offline_image(client, log=print)
    client.close()
    return SandboxSettings(backend="docker", image=image, memory_mb=256, pids=64, timeout_s=timeout_s)
