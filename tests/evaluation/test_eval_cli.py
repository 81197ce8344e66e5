"""``assistant eval`` through the CLI: one clear line for bad input; a real run on a nano model
prints the table (perplexity, held-out tool-call metrics) and writes the JSON report."""

from __future__ import annotations

import json

from assistant.cli import main


def test_missing_checkpoint_is_one_clear_line(capsys, tmp_path):
    assert main(["eval", str(tmp_path / "nope.pth"), "--no-e2e"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]


def test_missing_heldout_file_is_one_clear_line(capsys, tmp_path):
    model = tmp_path / "m.pth"
    model.write_bytes(b"x")
    assert main(["eval", str(model), "--heldout", str(tmp_path / "none.jsonl"), "--no-e2e"]) == 2
    assert "held-out set not found" in capsys.readouterr().err


def test_eval_prints_the_table_and_json_for_a_real_model(trained_nano, prepared, tmp_path, capsys):
    """A nano language model: perplexity is measured; asked for tool calls it fails, and that shows."""
    heldout = tmp_path / "heldout.jsonl"
    conversation = {"id": "h1", "family": "execute_python", "key_facts": ["391"], "messages": [
        {"role": "system", "content": "You are a coding assistant."},
        {"role": "user", "content": "What is 17 * 23?"},
        {"role": "assistant", "content": "", "tool_call": {"name": "execute_python", "arguments": {"code": "print(17 * 23)"}}},
        {"role": "tool", "content": '{"tool":"execute_python","ok":true,"stdout":"391\\n"}'},
        {"role": "assistant", "content": "17 * 23 is 391."}]}
    heldout.write_text(json.dumps(conversation) + "\n")
    report = tmp_path / "report.json"
    assert main(["eval", str(trained_nano), "--data-dir", str(prepared["data"]), "--heldout", str(heldout),
                 "--no-e2e", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "| perplexity, language val |" in out and "| right tool (all requests) |" in out
    data = json.loads(report.read_text())
    model = data["models"][0]
    assert model["perplexity"]["language"]["perplexity"] > 1
    assert model["heldout"]["examples"] == 1 and model["heldout"]["right_tool"] == 0.0  # an untrained model fails
