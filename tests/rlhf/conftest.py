"""Stage 4/10 fixtures: the trainer's tiny corpora, tokenizer, prepared data and nano model, the
sandbox's Docker image, and preference data prepared by the real command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sandbox.conftest import TEST_LIMITS, docker_client, sandbox_image  # noqa: F401
from tests.threads import _one_torch_thread  # noqa: F401 (autouse fixture)
from tests.trainer.conftest import corpora, prepared, train_args, trained_nano  # noqa: F401


@pytest.fixture(scope="session")
def verify_settings(sandbox_image):
    from sandbox.limits import SandboxSettings

    return SandboxSettings(backend="docker", image=sandbox_image, **TEST_LIMITS)


def write_sandbox_settings(project: Path, image: str) -> None:
    (project / ".assistant").mkdir(parents=True, exist_ok=True)
    (project / ".assistant" / "settings.toml").write_text(f'[sandbox]\nbackend = "docker"\nimage = "{image}"\n')


@pytest.fixture(scope="session")
def rlhf_data(sandbox_image, tmp_path_factory) -> Path:
    """Preference pairs from all built-in tasks, made by 'assistant data prepare --stage rlhf'."""
    import os

    from assistant.cli import main

    project = tmp_path_factory.mktemp("rlhf-project")
    write_sandbox_settings(project, sandbox_image)
    out = project / "data"
    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert main(["data", "prepare", "--stage", "rlhf", "--output-dir", str(out)]) == 0
    finally:
        os.chdir(cwd)
    return out
