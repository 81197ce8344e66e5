"""A nano model trained by the project's own pipeline (``assistant data tokenizer``, ``data
prepare``, ``train``) to carry out three objectives in the chat format: a multi-step computation
(read_file, then execute_python in the sandbox, then the answer), a file write (write_file), and a
plan-mode objective (a one-step plan, then that step with execute_python).

The training conversations are the exact prompts the agent builds for those objectives: a run of
the real loop with the scripted replies records each step's prompt (the tool results come from the
real sandbox), fitted to the nano model's window exactly as the runtime fits it, and the corpus is
those prompts followed by the replies. A few hundred steps make the model memorise them, so the
real model then drives the real loop deterministically (greedy decoding).
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from assistant.settings import set_project_setting

OBJECTIVE = "Use calc.add to add 2 and 3 in the sandbox."
CODE = "exec(open('calc.py').read())\nprint(add(2, 3))"
ANSWER = "add(2, 3) returns 5. I read calc.py and ran it in the sandbox."
NOTES_OBJECTIVE = "Write NOTES.md saying what calc.py holds."
NOTES = "calc.py: add and mean.\n"
NOTES_ANSWER = "I wrote NOTES.md."
DENIED = ("analyze_code", "debug_code", "search_docs", "apply_patch", "search_code", "run_tests", "list_files",
          "execute_bash", "remember")


PLAN_OBJECTIVE = "Check that add(2, 3) is 5."
PLAN_STEP = "Compare add(2, 3) with 5 in the sandbox."
PLAN_CODE = "exec(open('calc.py').read())\nprint(add(2, 3) == 5)"  # unlike CODE, so the two endings differ
PLAN_ANSWER = "True: the check passes."
# every answer the model memorises: a near miss of memorisation may recall another objective's
FINAL_ANSWERS = (ANSWER, NOTES_ANSWER, PLAN_ANSWER)


def scenarios() -> list[tuple[str, list[str], bool]]:
    """(objective, the replies the model learns, plan mode) for each objective."""
    from tests.agent.helpers import call

    return [(OBJECTIVE, [call("read_file", "Let me read calc.py.", path="calc.py"), call("execute_python", code=CODE),
                         ANSWER], False),
            (NOTES_OBJECTIVE, [call("write_file", path="NOTES.md", content=NOTES), NOTES_ANSWER], False),
            (PLAN_OBJECTIVE, [f"1. {PLAN_STEP}", call("execute_python", code=PLAN_CODE), PLAN_ANSWER], True)]


@dataclass
class TrainedAgent:
    checkpoint: Path
    project: Path  # the pristine project: copy it (``fresh_copy``) before a run that writes
    objective: str
    answer: str

    def fresh_copy(self, target: Path) -> Path:
        """The project with the same content elsewhere (prompts hold no absolute path)."""
        shutil.copytree(self.project, target, ignore=shutil.ignore_patterns("shadow.git", "backups"))
        return target


def configure(project: Path, image: str) -> None:
    """The project's settings: the test image, a short system prompt, only the two tools used."""
    set_project_setting(project, "sandbox.backend", "docker")
    set_project_setting(project, "sandbox.image", image)
    set_project_setting(project, "agent.system_prompt", "You are a coding assistant. Use the tools.")
    set_project_setting(project, "agent.summary_tokens", 0)
    set_project_setting(project, "agent.max_new_tokens", 64)
    for tool in DENIED:
        set_project_setting(project, f"approvals.{tool}", "deny")


def conversations(project: Path, tokenizer, sandbox_factory, window: int = 4096, variants: int = 1) -> list[str]:
    """Each step's prompt + the reply the model must learn. The prompt is the token sequence the
    runtime would feed a model with this ``window`` (``fit_conversation``), decoded back to text.
    ``variants`` runs of each objective differ in what tool results carry by nature (timings, backup
    ids), so the model learns that they do not matter."""
    from assistant.agent import AgentSession, agent_settings
    from assistant.runtime.context import fit_conversation, reply_budget
    from assistant.settings import load_settings
    from tests.agent.helpers import Approver, ScriptedModel
    from trainer.data.chat_format import END

    docs = []
    runs = [scenario for scenario in scenarios() for _ in range(variants)]
    for index, (objective, replies, plan) in enumerate(runs):
        workdir = project.parent / f".capture-{index}"
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.copytree(project, workdir)  # writes land in a copy: the project stays pristine
        settings = agent_settings(load_settings(workdir))
        model = ScriptedModel(tokenizer, list(replies), context_window=window)
        session = AgentSession(workdir, model=model, sandbox_factory=lambda w=workdir: sandbox_factory(w), index=None,
                               settings=settings, approver=Approver(default="once"))
        with session:
            finished = session.run_turn(objective, cancel=threading.Event(), plan=plan)
        assert finished.stop_reason == "answer", finished
        for (messages, tools), reply in zip(model.prompts, replies):
            fitted = fit_conversation(messages, tokenizer, reply_budget(window, settings.max_new_tokens), tools)
            docs.append(tokenizer.decode(fitted.ids) + reply + END)
        shutil.rmtree(workdir, ignore_errors=True)
    return docs


def build(root: Path, project: Path, sandbox_factory, steps: int = 2400, copies: int = 15, variants: int = 2) -> Path:
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
    (corpus / "chat.txt").write_text("\n<|endoftext|>\n".join(first * copies * variants), encoding="utf-8")
    tokenizer = root / "tokenizer.json"
    assert main(["data", "tokenizer", "--input", str(corpus), str(prose), "--vocab-size", "1024",
                 "--output", str(tokenizer)]) == 0
    docs = conversations(project, load_tokenizer(tokenizer), sandbox_factory, window=512, variants=variants)
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
