"""Helpers for the agent tests: a scripted reply source (a test double for the model's TEXT only:
parsing, approvals, the sandbox, stores and undo stay real), event recording, approvers, a project."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.agent import events as ev
from assistant.agent.model import Generated

TOOL_CALL = "<|tool_call|>"


def call(name: str, prefix: str = "", /, **arguments: Any) -> str:
    """A reply that calls ``name`` in the chat format (what a trained model writes), after ``prefix`` text."""
    return f"{prefix}{TOOL_CALL}{json.dumps({'name': name, 'arguments': arguments})}"


class ScriptedModel:
    """Replies from a script instead of a network: each ``generate`` returns the next reply (a string,
    or a function of the prompt messages). Tokens are counted with a real trained tokenizer."""

    def __init__(self, tokenizer, replies: list[str | Callable[[list[dict]], str]], context_window: int = 4096,
                 delay_s: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.context_window = context_window
        self.name = "scripted"
        self.delay_s = delay_s
        self.prompts: list[tuple[list[dict], list[dict]]] = []

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) if text else 0

    def render_count(self, messages, tools) -> int:
        """Exactly what the runtime feeds the model (as ``RuntimeModel.render_count``)."""
        from trainer.data.chat_format import render

        return len(render(messages, self.tokenizer, tools=tools, add_generation_prompt=True))

    def generate(self, messages, tools, on_text, cancel: threading.Event, **sampling) -> Generated:
        self.prompts.append((json.loads(json.dumps(messages)), list(tools)))
        if not self.replies:
            reply = "(the script has no more replies)"
        else:
            reply = self.replies.pop(0)
            reply = reply(messages) if callable(reply) else reply
        out = []
        for i in range(0, len(reply), 4):
            if cancel.is_set():
                return Generated("".join(out), False, "cancelled", len(out))
            piece = reply[i : i + 4]
            out.append(piece)
            on_text(piece)
            if self.delay_s:
                time.sleep(self.delay_s)
        return Generated(reply, True, "end", tokens=len(out), tokens_per_s=100.0)


class Recorder:
    """Collects the events of a turn (``on_event``)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, kind) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.of(ev.TextDelta))


class Approver:
    """Answers approval requests with the given choices in order (then ``default``), recording each request."""

    def __init__(self, *choices: str | ev.ApprovalDecision, default: str = "reject") -> None:
        self.choices = [c if isinstance(c, ev.ApprovalDecision) else ev.ApprovalDecision(c) for c in choices]
        self.default = default
        self.requests: list[ev.ApprovalRequest] = []

    def __call__(self, request: ev.ApprovalRequest) -> ev.ApprovalDecision:
        self.requests.append(request)
        return self.choices.pop(0) if self.choices else ev.ApprovalDecision(self.default)


def make_project(root: Path) -> Path:
    """A small Python project (readable by the sandbox's uid when tests run as root)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    return sum(values) / len(values)\n")
    (root / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    (root / "README.md").write_text("# calc\nTiny arithmetic helpers.\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def run_until_killed(project: str, db: str, tokenizer_path: str, ready) -> None:
    """In a child process: a turn whose second model call hangs after one tool call ran."""
    from assistant.agent import AgentSession, SessionStore
    from trainer.data.tokenizer import load_tokenizer

    def hang(messages):
        ready.set()
        time.sleep(600)
        return "never"

    model = ScriptedModel(load_tokenizer(tokenizer_path), [call("read_file", path="calc.py"), hang])
    session = AgentSession(Path(project), model=model, sandbox_factory=None, index=None, store=SessionStore(db))
    session.run_turn("read calc.py then think forever")
