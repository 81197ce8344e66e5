"""A nano model that has memorised a few agent conversations, made by the project's own pipeline.

Real models answer differently every time; a test that needs "the model calls execute_python" needs
a model that surely does. So this trains one. The conversations are recorded from the real agent loop
(``AgentSession`` with the replies scripted, the tool results from real runs), so the prompts are
exactly the ones the agent will build; a byte-level BPE (``trainer.data.tokenizer``) learns them,
they are prepared as stage-1 data (``trainer.data.prepare``) and the real training loop
(``trainer.loop.train``) fits a dense nano model until greedy decoding reproduces every reply. No mock
in the tests that use it: the app, the agent, the runtime and the sandbox see a real checkpoint that
happens to know these exchanges by heart.

The project the tests run in must give the same prompts: ``make_project`` writes its settings (a
fixed short system prompt, no optional prompt sections, only the two tools the conversations use, the
rest denied and so hidden, greedy decoding).

    checkpoint = train_memorised_model(tmp_dir)    # about a minute of one CPU core
    project = make_project(tmp_dir / "project", {"backend": "docker", "image": image})
"""

from __future__ import annotations

import json
import re
import sysconfig
import threading
from pathlib import Path
from typing import Any

import tomli_w

SYSTEM = "You are the test assistant. Use a tool when asked to run or change code."
TOOLS = ("execute_python", "write_file")  # the only tools shown to the model (the rest are denied)
AGENT_TOOLS = {"remember", "search_codebase"}  # the agent's own tools, beside the sandbox's
TOOL_CALL = "<|tool_call|>"
HELLO = "hello"
HELLO_REPLY = ("Hello! I am a tiny model trained for these tests. I can run Python in the sandbox "
               "and change files after you approve.")
RUN = "what is six times seven?"
RUN_CODE = "print(6 * 7)"
RUN_ANSWER = "The sandbox printed 42, so six times seven is 42."
FIX = "fix the greeting in greet.py"
FIX_CONTENT = "print('hello, world')\n"
FIX_ANSWER = "I changed greet.py: it now prints hello, world."
COUNT = "count to one hundred"
COUNT_REPLY = " ".join(str(i) for i in range(1, 101))
GREET_BEFORE = "print('helo wrld')\n"
MAX_NEW_TOKENS = 240
DURATIONS = (0.012, 0.05, 0.087, 0.153, 0.38, 0.721, 1.4, 3.06)
BACKUP_IDS = ("20261124-040101-1a2b3c", "20261125-235959-9f8e7d", "20270301-120000-00aa11", "20261201-081512-c0ffee")
# nano's window is 512; a wider one leaves the agent room for the prompt (~350 tokens) and a reply of
# MAX_NEW_TOKENS without cutting either. Training windows cover a whole conversation.
WINDOW = 1024
TRAIN_SEQ_LEN = 384


def project_settings(sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings that keep the agent's prompt short and fixed (greedy decoding too)."""
    from sandbox.tools import TOOLS as SANDBOX_TOOLS

    every_tool = set(SANDBOX_TOOLS) | AGENT_TOOLS
    settings: dict[str, Any] = {
        "agent": {"system_prompt": SYSTEM, "temperature": 0.0, "max_new_tokens": MAX_NEW_TOKENS, "max_steps": 4,
                  "summary_tokens": 0, "instructions_tokens": 0, "memory_tokens": 0, "retrieval_tokens": 0},
        "approvals": {name: "deny" for name in sorted(every_tool - set(TOOLS))},
    }
    if sandbox:
        settings["sandbox"] = dict(sandbox)
    return settings


def make_project(root: Path, sandbox: dict[str, Any] | None = None) -> Path:
    """The project the conversations happen in (readable by the sandbox's uid when tests run as root)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "greet.py").write_text(GREET_BEFORE)
    (root / "README.md").write_text("# greet\nSays hello.\n")
    path = root / ".assistant" / "settings.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(project_settings(sandbox)))
    for item in [root, *root.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)
    return root


def _record(project: Path, tokenizer, message: str, replies: list[str]) -> list[str]:
    """Run the real agent loop on ``message`` with ``replies`` scripted; return each step's prompt
    (exactly as the agent built it, tool results from a real run) followed by its reply."""
    from assistant.agent import AgentSession, agent_settings
    from assistant.settings import load_settings
    from sandbox.factory import open_sandbox
    from sandbox.limits import SandboxSettings
    from tests.agent.helpers import Approver, ScriptedModel
    from trainer.data.chat_format import END, render_text

    model = ScriptedModel(tokenizer, list(replies), context_window=WINDOW)
    # No engine needed: the only code run while recording is RUN_CODE, confirmed on the host.
    factory = lambda: open_sandbox(SandboxSettings(backend="none"), project, confirm=lambda code, language: True)
    session = AgentSession(project, model=model, sandbox_factory=factory, index=None,
                           settings=agent_settings(load_settings(project)), approver=Approver(default="once"))
    with session:
        finished = session.run_turn(message, cancel=threading.Event())
    assert finished.stop_reason == "answer", finished
    return [render_text(messages, tools, add_generation_prompt=True) + reply + END
            for (messages, tools), reply in zip(model.prompts, replies)]


def recorded_documents(root: Path, tokenizer) -> list[str]:
    """The exchanges the model learns, recorded from the agent (several runs of the tool calls, so the
    answers do not hang on a result's exact timing or backup id)."""
    run_call = TOOL_CALL + json.dumps({"name": "execute_python", "arguments": {"code": RUN_CODE}})
    fix_call = TOOL_CALL + json.dumps({"name": "write_file", "arguments": {"path": "greet.py", "content": FIX_CONTENT}})
    plan = [(HELLO, [HELLO_REPLY]), (COUNT, [COUNT_REPLY]), (RUN, [run_call, RUN_ANSWER]),
            (FIX, [fix_call, FIX_ANSWER])]
    documents = []
    for n, (message, replies) in enumerate(plan):
        documents += _record(make_project(root / f"recording-{n}", {"backend": "none"}), tokenizer, message, replies)
    return [variant for doc in documents for variant in _result_variants(doc)]


def _result_variants(document: str) -> list[str]:
    """A recorded tool result with other timings and backup ids (the only parts that change between
    runs; Docker's calls take longer than the host's), so the answer after it does not hang on them."""
    if '"duration_s":' in document:
        return [re.sub(r'"duration_s":[0-9.]+', f'"duration_s":{value}', document) for value in DURATIONS]
    if '"backup_id":"' in document:
        return [re.sub(r'"backup_id":"[^"]*"', f'"backup_id":"{value}"', document) for value in BACKUP_IDS]
    return [document]


def train_memorised_model(root: Path, steps: int = 200) -> Path:
    """Tokenizer, prepared data and a trained dense nano checkpoint under ``root``; returns the checkpoint."""
    import torch

    from trainer.data.corpora import CorpusReport
    from trainer.data.prepare import prepare_stage
    from trainer.data.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
    from trainer.loop import TrainConfig, train

    root.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [p.read_text(encoding="utf-8") for p in sorted(stdlib.glob("*.py"))[:8]]
    # Two recordings: the agent fits its prompt by counting tokens, so the first (with a provisional
    # tokenizer) only gives the text the real tokenizer learns from; the second, counted with the real
    # tokenizer, is token for token what the agent will feed the trained model (tool timings aside).
    draft = recorded_documents(root / "draft", train_tokenizer(iter(sources), vocab_size=400))
    tokenizer_path = root / "tokenizer.json"
    save_tokenizer(train_tokenizer(iter(draft * 4 + sources), vocab_size=1024), tokenizer_path)
    tokenizer = load_tokenizer(tokenizer_path)
    documents = recorded_documents(root / "recordings", tokenizer)
    # The answers after a tool result come in several variants each: weigh the first replies alike.
    documents += [doc for doc in documents if "<|tool_result|>" not in doc] * 3
    data = root / "data"
    # Every conversation many times over: the whole stream is what the model should know by heart.
    prepare_stage("language", iter(documents * 25), CorpusReport(), tokenizer, data, val_fraction=0.05)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the trainer's API rather than its CLI only to widen the window (the CLI has no flag for it)
        train(TrainConfig(stage="language", model_size="nano", data_dir=str(data), tokenizer=str(tokenizer_path),
                          output_dir=str(root / "out"), batch_size=4, seq_len=TRAIN_SEQ_LEN, steps_per_epoch=steps,
                          learning_rate=5e-3, warmup_steps=20, weight_decay=0.0, eval_interval=steps,
                          eval_batches=2, log_interval=50, device="cpu", quiet=True,
                          model_overrides={"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "dropout": 0.0,
                                           "max_seq_len": WINDOW}), on_log=lambda line: None)
    finally:
        torch.set_num_threads(before)
    return root / "out" / "language_model_last.pth"
