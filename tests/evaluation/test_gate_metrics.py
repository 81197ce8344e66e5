"""The evaluation suite's rows of the stage-10 promotion gate (assistant/retrain_gate.py): tool-call
validity and right-tool rate, paired per held-out conversation, measured on real models.

The current model is the shipped default model, which calls ``analyze_code`` for lint requests
(models/README.md); the candidate that "forgot" tool calling is a nano language model trained by the
project. The gate must measure both rows, hold for an identical candidate and refuse the forgetful one."""

from __future__ import annotations

import json

from assistant.default_model import DEFAULT_MODEL
from assistant.retrain_gate import make_eval_metrics
from trainer.data.tool_calling import SYSTEM_PROMPT

FILES = ["vendor/graphlib.py", "kit/misc.py", "helpers/calc.py", "tools/strings.py", "shop/cart.py", "dates/roman.py"]
REQUESTS = ["Analyze {file} for problems.", "Lint {file}.", "Check {file} for bugs and style problems."]


def _heldout(data_dir):
    data_dir.mkdir()
    records = [{"id": f"gate-{i}", "family": "analyze_code", "key_facts": [], "messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": REQUESTS[i % len(REQUESTS)].format(file=file)},
        {"role": "assistant", "content": "", "tool_call": {"name": "analyze_code", "arguments": {"path": file}}},
        {"role": "tool", "content": '{"tool":"analyze_code","ok":true}'},
        {"role": "assistant", "content": "No problems found."}]} for i, file in enumerate(FILES)]
    (data_dir / "tool_calling_heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return data_dir


def test_the_gate_measures_tool_calls_and_refuses_a_candidate_that_stopped_calling_tools(trained_nano, tmp_path):
    from trainer.continual.gate import run_gate

    metrics = make_eval_metrics(_heldout(tmp_path / "data"), None, heldout_limit=len(FILES), tasks_limit=0)
    same = {row["name"]: row for row in metrics(DEFAULT_MODEL, DEFAULT_MODEL)}
    for name in ("tool_call:validity", "tool_call:right_tool"):
        row = same[name]
        assert row["measured"] and row["items"] == len(FILES) and not row["regressed"], row
        assert row["current"] == row["candidate"] >= 0.5, row  # the shipped model lints with analyze_code
    assert not same["end_to_end:success"]["measured"]  # --gate-tasks 0: listed, not hidden

    gate = run_gate(DEFAULT_MODEL, trained_nano, data_dir=None, labelled=[], pairs=[], held_out=False, extra_metrics=metrics)
    rows = {m.name: m for m in gate.metrics}
    assert not gate.passed and {"tool_call:validity", "tool_call:right_tool"} <= set(gate.regressions)
    assert rows["tool_call:right_tool"].candidate == 0.0  # a language model never calls the tool

    improved = {row["name"]: row for row in metrics(trained_nano, DEFAULT_MODEL)}
    assert not improved["tool_call:right_tool"]["regressed"] and improved["tool_call:right_tool"]["candidate"] >= 0.5
