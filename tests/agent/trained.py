"""A nano model trained by the project's own pipeline (``assistant data tokenizer``, ``data
prepare``, ``train``) to carry out one multi-step objective in the chat format.

The training conversations are the exact prompts the agent builds for that objective: a run of
the real loop with the scripted replies records each step's prompt (the tool results come from the
real sandbox), and the corpus is those prompts followed by the replies. A few hundred steps make
the model memorise them, so the real model then drives the real loop deterministically (greedy).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from assistant.settings import set_project_setting

OBJECTIVE = "Use calc.add to add 2 and 3 in the sandbox."
CODE = "exec(open('calc.py').read())\nprint(add(2, 3))"
ANSWER = "add(2, 3) returns 5. I read calc.py and ran it in the sandbox."
DENIED = ("analyze_code", "debug_code", "search_docs", "apply_patch", "write_file", "search_code", "run_tests",
          "list_files", "execute_bash")


@dataclass
class TrainedAgent:
    checkpoint: Path
    project: Path
    objective: str
    answer: str


def configure(project: Path, image: str) -> None:
    """The project's settings: the test image, a short system prompt, only the two tools used."""
    set_project_setting(project, "sandbox.backend", "docker")
    set_project_setting(project, "sandbox.image", image)
    set_project_setting(project, "agent.system_prompt", "You are a coding assistant. Use the tools.")
    set_project_setting(project, "agent.summary_tokens", 0)
    set_project_setting(project, "agent.max_new_tokens", 64)
    for tool in DENIED:
        set_project_setting(project, f"approvals.{tool}", "deny")


def conversations(project: Path, tokenizer, sandbox_factory, window: int = 4096) -> list[str]:
    """Each step's prompt + the reply the model must learn, rendered in the chat format (``window``:
    the model's, so the context is fitted exactly as it will be for the real model)."""
    from assistant.agent import AgentSession, agent_settings
    from assistant.settings import load_settings
    from tests.agent.helpers import Approver, ScriptedModel, call
    from trainer.data.chat_format import END, render_text

    replies = [call("read_file", "Let me read calc.py.", path="calc.py"), call("execute_python", code=CODE), ANSWER]
    model = ScriptedModel(tokenizer, list(replies), context_window=window)
    session = AgentSession(project, model=model, sandbox_factory=sandbox_factory, index=None,
                           settings=agent_settings(load_settings(project)), approver=Approver(default="once"))
    with session:
        finished = session.run_turn(OBJECTIVE, cancel=threading.Event())
    assert finished.stop_reason == "answer", finished
    return [render_text(messages, tools, add_generation_prompt=True) + reply + END
            for (messages, tools), reply in zip(model.prompts, replies)]


def build(root: Path, project: Path, sandbox_factory, steps: int = 250, copies: int = 40) -> Path:
    """Tokenizer, prepared data and a nano dense model, all through the real CLI.

    Two passes: a first capture (provisional tokenizer) gives the text the tokenizer learns from;
    the second capture, counted with that final tokenizer and the nano window, is what the agent
    will feed the trained model token for token (tool timings aside)."""
    import sysconfig

    from assistant.cli import main
    from trainer.data.tokenizer import load_tokenizer, train_tokenizer

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [p.read_text(encoding="utf-8") for p in sorted(stdlib.glob("*.py"))[:6]]
    provisional = train_tokenizer(iter(sources), vocab_size=400)
    first = conversations(project, provisional, sandbox_factory)
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    prose = root / "prose"
    prose.mkdir()
    (prose / "text.txt").write_text("\n".join(sources), encoding="utf-8")
    (corpus / "chat.txt").write_text("\n<|endoftext|>\n".join(first * copies), encoding="utf-8")
    tokenizer = root / "tokenizer.json"
    assert main(["data", "tokenizer", "--input", str(corpus), str(prose), "--vocab-size", "1024",
                 "--output", str(tokenizer)]) == 0
    docs = conversations(project, load_tokenizer(tokenizer), sandbox_factory, window=512)
    (corpus / "chat.txt").write_text("\n<|endoftext|>\n".join(docs * copies), encoding="utf-8")
    data = root / "data"
    assert main(["data", "prepare", "--stage", "language", "--input", str(corpus), "--tokenizer", str(tokenizer),
                 "--output-dir", str(data), "--val-fraction", "0.05"]) == 0
    out = root / "model"
    assert main(["train", "--stage", "language", "--model-size", "nano", "--data-dir", str(data), "--output-dir", str(out),
                 "--batch-size", "2", "--seq-len", "512", "--steps-per-epoch", str(steps), "--learning-rate", "3e-3",
                 "--warmup-steps", "20", "--eval-interval", str(steps), "--eval-batches", "2", "--log-interval", "50",
                 "--use-rmsnorm", "--use-rope", "--use-swiglu", "--device", "cpu"]) == 0
    return out / "language_model_last.pth"
