"""What runs here must run in CI: a missing engine or tool fails there (.ci/run installs it) and is
skipped only on a developer's machine without it."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str) -> None:
    """Fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} (CI must run this test: .ci/run installs and starts what it needs)", pytrace=False)
    pytest.skip(what)
