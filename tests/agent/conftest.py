"""Agent fixtures: a tokenizer and models made by the project's own trainer, the real Docker
sandbox (the image fixture of tests/sandbox), and isolated stores."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from tests.index.conftest import embedder_cache  # noqa: F401 (fixture: the ONNX embedder exported once for these tests)
from tests.sandbox.conftest import TEST_LIMITS, docker_client, sandbox_image  # noqa: F401 (fixtures)
from tests.threads import _one_torch_thread  # noqa: F401 (autouse fixture)

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """A 700-token byte-level BPE (chat tokens reserved) trained on standard-library sources."""
    from trainer.data.tokenizer import save_tokenizer, train_tokenizer

    documents = [p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))[:20]]
    tokenizer = train_tokenizer(iter(documents), vocab_size=700)
    save_tokenizer(tokenizer, tmp_path_factory.mktemp("agent-tokenizer") / "tokenizer.json")
    return tokenizer


@pytest.fixture
def project(tmp_path) -> Path:
    from tests.agent.helpers import make_project

    return make_project(tmp_path / "project")


@pytest.fixture
def docker_factory(sandbox_image):  # noqa: F811
    """``factory(project)`` -> a callable starting the real Docker sandbox for that project."""
    from sandbox.factory import open_sandbox
    from sandbox.limits import SandboxSettings

    settings = SandboxSettings(backend="docker", image=sandbox_image, **TEST_LIMITS)
    opened = []

    def for_project(project: Path):
        def start():
            sandbox = open_sandbox(settings, project)
            opened.append(sandbox)
            return sandbox

        return start

    yield for_project
    for sandbox in opened:
        sandbox.close()


@pytest.fixture(scope="session")
def trained_agent(sandbox_image, tmp_path_factory):  # noqa: F811
    """A nano model trained by the project's CLI to carry out ``trained.OBJECTIVE`` (see trained.py)."""
    import torch

    from sandbox.factory import open_sandbox
    from sandbox.limits import SandboxSettings
    from tests.agent import trained
    from tests.agent.helpers import make_project

    root = tmp_path_factory.mktemp("trained-agent")
    project = make_project(root / "project")
    trained.configure(project, sandbox_image)
    settings = SandboxSettings(backend="docker", image=sandbox_image, **TEST_LIMITS)
    opened = []

    def factory(path: Path):
        opened.append(open_sandbox(settings, path))
        return opened[-1]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        checkpoint = trained.build(root / "train", project, factory)
    finally:
        torch.set_num_threads(before)
        for sandbox in opened:
            sandbox.close()
    return trained.TrainedAgent(checkpoint, project, trained.OBJECTIVE, trained.ANSWER)
