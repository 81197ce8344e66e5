"""A nano model that has memorised a few chat-format conversations, made by the project's own pipeline.

Real models answer differently every time; a test that needs "the model calls execute_python" needs
a model that surely does. So this trains one: a byte-level BPE (``trainer.data.tokenizer``) on the
conversations below rendered in the chat format (``trainer.data.chat_format``), prepared as stage-1
data (``trainer.data.prepare``) and trained by the real trainer (``assistant train``) until it
reproduces them under greedy decoding. No mock anywhere: the agent, the runtime and the sandbox see a
real checkpoint that happens to know these exchanges by heart.

The agent's prompt must be the one the model was trained on, so the project it runs in gets
``PROJECT_SETTINGS`` (``write_project_settings``): a fixed short system prompt, no optional prompt
sections, and only the two tools the conversations use (the rest denied, hence hidden).

    checkpoint = train_memorised_model(tmp_dir)        # about a minute on one free CPU core
    write_project_settings(project, sandbox_image="assistant-sandbox:bookworm")
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import Any

import tomli_w

SYSTEM = "You are the test assistant. Use a tool when asked to run or change code."
TOOLS = ("execute_python", "write_file")  # the only tools shown to the model (the rest are denied)
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
# nano's window is 512; a wider one leaves the agent room for the prompt (~350 tokens) and a reply of
# MAX_NEW_TOKENS without cutting either. Training windows cover a whole conversation.
WINDOW = 1024
TRAIN_SEQ_LEN = 384


def tool_schemas() -> list[dict[str, Any]]:
    from sandbox.tools import get_tool

    return [get_tool(name).schema() for name in TOOLS]


def project_settings(sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings that make the agent's prompt exactly the trained one (greedy decoding too)."""
    from sandbox.tools import TOOLS as ALL

    approvals = {name: "deny" for name in ALL if name not in TOOLS}
    settings: dict[str, Any] = {
        "agent": {"system_prompt": SYSTEM, "temperature": 0.0, "max_new_tokens": MAX_NEW_TOKENS, "max_steps": 4,
                  "summary_tokens": 0, "instructions_tokens": 0, "memory_tokens": 0, "retrieval_tokens": 0},
        "approvals": approvals,
    }
    if sandbox:
        settings["sandbox"] = dict(sandbox)
    return settings


def write_project_settings(project: Path, sandbox: dict[str, Any] | None = None) -> Path:
    path = project / ".assistant" / "settings.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(project_settings(sandbox)))
    return path


def _exec_result(stdout: str, duration: float) -> str:
    from sandbox.base import ExecResult
    from sandbox.tools.execute_python import exec_result

    result = exec_result("execute_python", ExecResult(stdout=stdout, stderr="", exit_code=0, duration_s=duration))
    return json.dumps(result.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _write_result(backup: str) -> str:
    data = {"tool": "write_file", "ok": True, "paths": ["greet.py"], "backup_id": backup,
            "summary": "write greet.py (1 lines changed)"}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def conversations() -> list[list[dict[str, Any]]]:
    """The exchanges the model learns, each as the agent would show it (system message first)."""
    system = {"role": "system", "content": SYSTEM}
    run_call = {"role": "assistant", "content": "", "tool_call": {"name": "execute_python",
                                                                  "arguments": {"code": RUN_CODE}}}
    fix_call = {"role": "assistant", "content": "", "tool_call": {"name": "write_file",
                                                                  "arguments": {"path": "greet.py",
                                                                                "content": FIX_CONTENT}}}
    out = [
        [system, {"role": "user", "content": HELLO}, {"role": "assistant", "content": HELLO_REPLY}],
        [system, {"role": "user", "content": COUNT}, {"role": "assistant", "content": COUNT_REPLY}],
        [system, {"role": "user", "content": RUN}, run_call],
        [system, {"role": "user", "content": FIX}, fix_call],
    ]
    for duration in (0.05, 0.113, 0.4, 1.27, 2.5):  # the answer must not hang on the exact timing
        out.append([system, {"role": "user", "content": RUN}, run_call,
                    {"role": "tool", "content": _exec_result("42\n", duration)},
                    {"role": "assistant", "content": RUN_ANSWER}])
    for backup in ("20261124-040101-1a2b3c", "20261124-051502-9f8e7d", "20261125-120000-00aa11"):
        out.append([system, {"role": "user", "content": FIX}, fix_call,
                    {"role": "tool", "content": _write_result(backup)},
                    {"role": "assistant", "content": FIX_ANSWER}])
    return out


def rendered_documents() -> list[str]:
    from trainer.data.chat_format import render_text

    return [render_text(messages, tool_schemas()) for messages in conversations()]


def train_memorised_model(root: Path, steps: int = 200) -> Path:
    """Tokenizer, prepared data and a trained dense nano checkpoint under ``root``; returns the checkpoint."""
    import torch

    from trainer.data.corpora import CorpusReport
    from trainer.data.prepare import prepare_stage
    from trainer.data.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
    from trainer.loop import TrainConfig, train

    root.mkdir(parents=True, exist_ok=True)
    documents = rendered_documents()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = documents * 4 + [p.read_text(encoding="utf-8") for p in sorted(stdlib.glob("*.py"))[:8]]
    tokenizer_path = root / "tokenizer.json"
    save_tokenizer(train_tokenizer(iter(corpus), vocab_size=1024), tokenizer_path)
    tokenizer = load_tokenizer(tokenizer_path)
    data = root / "data"
    # Every conversation many times over: the whole stream is what the model should know by heart.
    prepare_stage("language", iter(documents * 40), CorpusReport(), tokenizer, data, val_fraction=0.05)
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
