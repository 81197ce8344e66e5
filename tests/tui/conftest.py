"""TUI fixtures: the real app (``App.run_test``) on a nano model the project's trainer taught a few
conversations by heart (``tests.memorised_model``), the real Docker sandbox, isolated stores."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.memorised_model import make_project, train_memorised_model
from tests.sandbox.conftest import TEST_LIMITS, docker_client, sandbox_image
from tests.threads import _one_torch_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="session")
def memorised_model(tmp_path_factory) -> Path:
    """Trained once per test session (ASSISTANT_TEST_MEMORISED_MODEL reuses one while developing)."""
    reuse = os.environ.get("ASSISTANT_TEST_MEMORISED_MODEL")
    if reuse:
        return Path(reuse)
    return train_memorised_model(tmp_path_factory.mktemp("memorised-model"))


@pytest.fixture(scope="session")
def embedder_cache(tmp_path_factory) -> Path:
    """The index's ONNX embedder export, made once per test session."""
    return tmp_path_factory.mktemp("embedders")


@pytest.fixture
def project(tmp_path) -> Path:
    """A project without a sandbox engine setting (the machine's default backend)."""
    return make_project(tmp_path / "project", {"backend": "none"})


@pytest.fixture
def docker_project(tmp_path, sandbox_image) -> Path:
    """A project whose sandbox is the real Docker engine with the locally built image."""
    return make_project(tmp_path / "project", {"backend": "docker", "image": sandbox_image, **TEST_LIMITS})


def make_app(project: Path, model: Path | str | None, resume: str | None = None, watch_index: bool = False):
    from assistant.tui.app import AssistantApp
    from assistant.tui.controller import LaunchOptions
    from assistant.tui.history import PromptHistory

    options = LaunchOptions(project=project, model=str(model) if model else "/nonexistent/model.pth",
                            resume=resume, device="cpu", watch_index=watch_index)
    return AssistantApp(options, history=PromptHistory(None))


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds (the machine is shared: generous, never a speed test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.02)


async def start(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.ready, what="start-up")


async def send(pilot, text: str) -> None:
    prompt = pilot.app.chat.prompt
    prompt.focus()
    prompt.load_text(text)
    await pilot.press("enter")


async def turn(pilot, text: str, count: int | None = None):
    """Send ``text`` and wait for its turn to end; returns its ``TurnFinished``."""
    app = pilot.app
    before = len(app.turns_finished) if count is None else count
    await send(pilot, text)
    await wait_for(pilot, lambda: len(app.turns_finished) > before and not app.generating, what=f"the reply to {text!r}")
    return app.turns_finished[-1]


def run(coro):
    return asyncio.run(coro)
