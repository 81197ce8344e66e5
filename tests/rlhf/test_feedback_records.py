"""Feedback store records -> stage 4/10 training data (the store is the agent's real SQLite store)."""

from __future__ import annotations

import json

from assistant.cli import main
from feedback import FeedbackStore
from trainer.continual.feedback import read_feedback, to_training_records

Q = [{"role": "user", "content": "How do I list files?"}]


def _store(path):
    with FeedbackStore(path) as store:
        store.add(kind="rating", value=1, session_id="s", turn_id="t1", messages=Q, response="Use os.listdir(path).")
        store.add(kind="rating", value=-1, session_id="s", turn_id="t2", messages=Q, response="Run rm -rf /.")
        store.add(kind="undone_turn", value=-1, session_id="s", turn_id="t3", messages=Q, response="Delete the folder.")
        store.add(kind="failed_tool", value=-1, session_id="s", turn_id="t4", messages=Q, response="ls")
        store.add(kind="rating", value=-1, session_id="s", turn_id="t5", messages=Q, response="Maybe.")
        store.add(kind="rating", value=1, session_id="s", turn_id="t5", messages=Q, response="Maybe.")  # re-rated


def test_store_records_become_thumbs_and_pairs(tmp_path):
    _store(tmp_path / "f.db")
    records = read_feedback(tmp_path / "f.db")
    assert [r["rating"] for r in records] == [1, -1, -1, 1]  # failed tools do not count; the newest rating wins
    pairs, labelled = to_training_records(records)
    assert [e["label"] for e in labelled] == [True, False, False, True]
    chosen = {p["chosen"]["content"] for p in pairs}
    rejected = {p["rejected"]["content"] for p in pairs}
    assert chosen == {"Use os.listdir(path).", "Maybe."} and rejected == {"Run rm -rf /.", "Delete the folder."}
    assert read_feedback(tmp_path / "f.db", since=records[-1]["created"]) == []


def test_prepare_rlhf_exports_the_store(tmp_path, capsys):
    _store(tmp_path / "f.db")
    out = tmp_path / "data"
    assert main(["data", "prepare", "--stage", "rlhf", "--sources", "feedback", "--feedback", str(tmp_path / "f.db"),
                 "--output-dir", str(out)]) == 0
    manifest = json.loads((out / "rlhf_manifest.json").read_text())
    assert manifest["sources"] == {"feedback": 4} and manifest["labelled"] == 4 and manifest["sandbox"] is None
    assert (out / "rlhf_kto_train.jsonl").exists()
    assert main(["data", "prepare", "--stage", "rlhf", "--sources", "nonsense", "--output-dir", str(out)]) == 1
    assert "unknown source 'nonsense'" in capsys.readouterr().err
