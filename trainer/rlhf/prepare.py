"""``assistant data prepare --stage rlhf``: preference pairs from checks that actually ran.

Sources (every label comes from running a real check, never from the generator's intent):

- ``tests``: a task's reference solution and its single-point mutants run against the task's tests
  in the sandbox; a candidate that passes everything is preferred to one that fails
  (margin = the difference in the share of tests passed).
- ``analysis``: a solution versus the same code with a lint or security problem added; kept only
  when ``analyze_code`` (ruff, bandit) finds nothing in the first and something in the second.
- ``tool_call``: a valid ``execute_python`` call versus malformed ones (broken JSON, unknown tool,
  arguments that break the schema); kept only when the chat format's parser agrees.
- ``feedback``: pairs and labelled examples exported from the feedback store (a JSONL file).

Writes ``rlhf_pairs_{train,val}.jsonl``, ``rlhf_kto_{train,val}.jsonl`` (from feedback thumbs,
when given) and ``rlhf_manifest.json`` into the output directory.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common.atomic import atomic_write_text
from trainer import TrainerError
from trainer.rlhf import data as pdata
from trainer.rlhf.tasks import code_reply, load_tasks, mutants, task_prompt

SOURCES = ("tests", "analysis", "tool_call", "feedback")

# problems added to clean code for the analysis pairs: (what, how to add it)
_INJECTIONS = (
    ("shell=True subprocess (bandit B602)",
     lambda code: "import subprocess\n\n\n" + code + "\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"),
    ("eval of text (bandit B307)",
     lambda code: code + "\n\ndef parse(text):\n    return eval(text)\n"),
    ("unused import (ruff F401)", lambda code: "import os\n" + code),
    ("bare except (ruff E722)",
     lambda code: code + "\n\ndef safe(f):\n    try:\n        return f()\n    except:\n        return None\n"),
)


def test_pairs(tasks: list[dict], verifier, log: Callable[[str], None]) -> list[dict]:
    pairs = []
    for task in tasks:
        candidates = [task["solution"], *mutants(task["solution"], limit=4)]
        scored = [(code, verifier.score(code, task["tests"])) for code in candidates]
        passing = [c for c, s in scored if s == 1.0]
        failing = sorted(((c, s) for c, s in scored if s < 1.0), key=lambda cs: cs[1])
        for i, (bad, score) in enumerate(failing):
            good = passing[i % len(passing)] if passing else None
            if good is None:
                break
            pairs.append({"prompt": task_prompt(task), "chosen": code_reply(good), "rejected": code_reply(bad),
                          "source": "tests", "margin": round(1.0 - score, 4), "task": task.get("name")})
        log(f"tests: {task.get('name')}: {len(passing)} of {len(candidates)} candidates pass")
    return pairs


def analysis_pairs(tasks: list[dict], log: Callable[[str], None]) -> list[dict]:
    import tempfile

    from sandbox.tools import call_tool
    from sandbox.tools.base import ToolContext

    def findings(code: str, ctx) -> int | None:
        result = call_tool("analyze_code", {"code": code, "checks": ["syntax", "lint", "security"]}, ctx)
        return len(result.data.get("findings", [])) if result.ok else None

    pairs = []
    with tempfile.TemporaryDirectory(prefix="assistant-rlhf-") as tmp:
        ctx = ToolContext(project=Path(tmp))
        for index, task in enumerate(tasks):
            what, inject = _INJECTIONS[index % len(_INJECTIONS)]
            clean, flagged = task["solution"], inject(task["solution"])
            n_clean, n_flagged = findings(clean, ctx), findings(flagged, ctx)
            if n_clean == 0 and n_flagged:
                pairs.append({"prompt": task_prompt(task), "chosen": code_reply(clean), "rejected": code_reply(flagged),
                              "source": "analysis", "margin": 1.0, "task": task.get("name"), "problem": what})
            else:
                log(f"analysis: {task.get('name')}: skipped ({n_clean} findings clean, {n_flagged} with {what})")
    return pairs


def tool_call_pairs(tasks: list[dict], log: Callable[[str], None]) -> list[dict]:
    from trainer.data.chat_format import ToolCall, ToolCallError, parse_reply, tool_call_json

    pairs = []
    for task in tasks:
        name = task["solution"].split("def ", 1)[1].split("(", 1)[0] if "def " in task["solution"] else None
        code = task["solution"] + (f"\nprint({name!s})\n" if name else "")
        prompt = [{"role": "user", "content": f"Run this and show me what it prints:\n{code}"}]
        good = {"name": "execute_python", "arguments": {"code": code}}
        valid = tool_call_json(good["name"], good["arguments"])
        malformed = [
            valid[:-1],  # the closing brace is missing
            tool_call_json("run_python", {"code": code}),  # no such tool
            tool_call_json("execute_python", {"source": code}),  # the schema's argument is "code"
        ]
        if not isinstance(parse_reply("<|tool_call|>" + valid), ToolCall):
            log(f"tool_call: {task.get('name')}: the valid call does not parse; skipped")
            continue
        for raw in malformed:
            parsed = parse_reply("<|tool_call|>" + raw)
            if not isinstance(parsed, ToolCallError):
                continue
            pairs.append({"prompt": prompt, "chosen": {"content": "", "tool_call": good},
                          "rejected": {"content": "", "tool_call_raw": raw}, "source": "tool_call",
                          "margin": 1.0, "problem": parsed.kind, "task": task.get("name")})
    return pairs


def feedback_records(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(pairs, labelled examples) from a feedback export (see ``trainer.continual.feedback``)."""
    from trainer.continual.feedback import read_feedback, to_training_records

    return to_training_records(read_feedback(path))


def prepare_rlhf(output_dir: str | Path, *, tasks_path: str | Path | None = None, sources: tuple[str, ...] = SOURCES,
                 feedback: str | Path | None = None, sandbox_settings=None, val_fraction: float = 0.2, seed: int = 1337,
                 max_tasks: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Build, check and split the preference data; returns the manifest."""
    from trainer.rlhf.verify import CodeVerifier

    log = log or (lambda line: None)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise TrainerError(f"unknown source {unknown[0]!r}", f"choose from {', '.join(SOURCES)}")
    tasks = load_tasks(tasks_path)[: max_tasks or None]
    pairs: list[dict] = []
    labelled: list[dict] = []
    started = time.perf_counter()
    backend = None
    if "tests" in sources:
        with CodeVerifier(sandbox_settings) as verifier:
            backend = verifier.backend
            pairs += test_pairs(tasks, verifier, log)
    if "analysis" in sources:
        pairs += analysis_pairs(tasks, log)
    if "tool_call" in sources:
        pairs += tool_call_pairs(tasks, log)
    if "feedback" in sources and feedback is not None:
        fb_pairs, fb_labelled = feedback_records(feedback)
        pairs += fb_pairs
        labelled += fb_labelled
    if not pairs:
        raise TrainerError("no preference pairs could be made", "check the sandbox ('assistant sandbox status') and --tasks")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, val = pdata.split(pairs, val_fraction, seed)
    counts = {"pairs_train": pdata.write_jsonl(out / f"{pdata.PAIRS}_train.jsonl", train),
              "pairs_val": pdata.write_jsonl(out / f"{pdata.PAIRS}_val.jsonl", val)}
    if labelled:
        l_train, l_val = pdata.split(labelled, val_fraction, seed)
        counts["labelled_train"] = pdata.write_jsonl(out / f"{pdata.LABELLED}_train.jsonl", l_train)
        counts["labelled_val"] = pdata.write_jsonl(out / f"{pdata.LABELLED}_val.jsonl", l_val)
    manifest = {"stage": "rlhf", "created": time.time(), "seconds": round(time.perf_counter() - started, 1),
                "tasks": len(tasks), "tasks_source": str(tasks_path) if tasks_path else "built-in",
                "sources": dict(Counter(p["source"] for p in pairs)), "labelled": len(labelled),
                "sandbox": backend, "counts": counts, "val_fraction": val_fraction, "seed": seed}
    atomic_write_text(out / "rlhf_manifest.json", json.dumps(manifest, indent=1))
    return manifest
