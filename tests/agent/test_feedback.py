"""Feedback capture: ratings and implicit signals stored with their context, secrets redacted,
concurrent writers from separate processes, the read API for retraining, and the CLI."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time

import pytest

from assistant.agent import AgentSession, AgentSettings
from assistant.cli import main
from feedback import FeedbackError, FeedbackStore
from feedback.redact import redact
from tests.agent.helpers import Approver, Recorder, ScriptedModel, call

SECRETS = {
    "openai": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "x1Y2z3" * 6,
    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    "password": 'DB_PASSWORD="hunter2-but-longer"',
    "bearer": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9abcdef",
}


def test_redaction_removes_keys_tokens_and_private_keys_but_keeps_code():
    for name, secret in SECRETS.items():
        cleaned = redact(f"config: {secret} end")
        assert "[REDACTED" in cleaned, name
        assert "end" in cleaned
    assert "hunter2" not in redact(SECRETS["password"]) and "b3BlbnNz" not in redact(SECRETS["private_key"])
    code = "token = get_token()\nmax_tokens = 512\npasswords = []\nprint(add(2, 3))"
    assert redact(code) == code


def test_a_thumbs_down_is_stored_with_its_full_context_and_redacted(project, tokenizer, tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    (project / ".env").write_text(f"OPENAI_API_KEY={SECRETS['openai']}\n")
    model = ScriptedModel(tokenizer, [call("read_file", path=".env"), f"Your key is {SECRETS['openai']}."])
    session = AgentSession(project, model=model, sandbox_factory=None, index=None, settings=AgentSettings(),
                           approver=Approver(), feedback=store)
    finished = session.run_turn(f"what is in .env? my github token is {SECRETS['github']}", on_event=Recorder())
    record_id = session.rate(finished.turn_id, -1, reason=f"it leaked {SECRETS['aws']}")
    record = store.get(record_id)
    assert record.kind == "rating" and record.value == -1 and record.turn_id == finished.turn_id
    assert record.session_id == session.id and record.model_id == "scripted" and record.created <= time.time()
    assert record.messages[0]["role"] == "system" and record.messages[1]["role"] == "user"  # the rendered prompt
    assert record.response.startswith("Your key is [REDACTED")
    assert [c["name"] for c in record.tool_calls] == ["read_file"] and record.tool_calls[0]["ok"] is True
    assert record.reason == "it leaked [REDACTED:aws_access_key]"
    raw = (tmp_path / "feedback.db").read_bytes() + _wal(tmp_path / "feedback.db")
    for secret in (SECRETS["openai"], SECRETS["github"], SECRETS["aws"]):
        assert secret.encode() not in raw
    assert session.rate(finished.turn_id, 1) > record_id
    assert [r.value for r in store.latest_ratings()] == [1]  # a changed mind: the newest rating counts


def _wal(path):
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_implicit_signals_rejected_approval_failed_tool_and_undo(project, tokenizer, tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    script = [call("read_file", path="nope.py"), call("write_file", path="calc.py", content="x = 1\n"), "done",
              call("write_file", path="calc.py", content="y = 2\n")]
    session = AgentSession(project, model=ScriptedModel(tokenizer, script), sandbox_factory=None, index=None,
                           settings=AgentSettings(), approver=Approver("once", "reject"), feedback=store)
    session.run_turn("rewrite calc", on_event=Recorder())
    session.undo_last_turn()
    session.run_turn("again", on_event=Recorder())
    kinds = [r.kind for r in store.since(0)]
    assert kinds == ["failed_tool", "undone_turn", "rejected_approval"]
    failed = store.since(0, kinds=("failed_tool",))[0]
    assert "nope.py does not exist" in failed.reason and failed.tool_calls[0]["name"] == "read_file"
    assert store.stats()["by_kind"] == {"rating": 0, "rejected_approval": 1, "undone_turn": 1, "failed_tool": 1}


def _writer(path: str, tag: str, n: int, start) -> None:
    store = FeedbackStore(path)
    start.wait()
    for i in range(n):
        store.add(kind="rating", value=1 if i % 2 else -1, session_id=tag, turn_id=f"{tag}-{i}",
                  messages=[{"role": "user", "content": f"{tag} {i}"}], response=f"reply {i}")
    store.close()


def test_two_processes_writing_at_once_never_lose_a_record(tmp_path):
    path = str(tmp_path / "feedback.db")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    writers = [ctx.Process(target=_writer, args=(path, tag, 150, start)) for tag in ("a", "b")]
    for p in writers:
        p.start()
    reader = FeedbackStore(path)
    start.set()
    seen = 0
    while any(p.is_alive() for p in writers):  # a reader polling while they write (a training job)
        seen = max(seen, reader.count())
        time.sleep(0.01)
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    records = reader.since(0)
    assert len(records) == 300
    assert {r.turn_id for r in records} == {f"{t}-{i}" for t in "ab" for i in range(150)}
    assert [r.id for r in records] == sorted(r.id for r in records)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_since_reads_incrementally_by_id_or_time(tmp_path):
    store = FeedbackStore(tmp_path / "f.db")
    first = store.add(kind="rating", value=1, response="a", created=1000.0)
    second = store.add(kind="failed_tool", response="b", created=2000.0)
    assert [r.id for r in store.since(0)] == [first, second]
    assert [r.id for r in store.since(first)] == [second]  # continue after the last id read
    assert [r.response for r in store.since(1500.0)] == ["b"]  # or after a Unix time
    with pytest.raises(FeedbackError):
        store.since("yesterday")
    with pytest.raises(FeedbackError):
        store.add(kind="bogus")


def test_a_newer_schema_is_refused_with_one_line(tmp_path):
    path = tmp_path / "f.db"
    FeedbackStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(FeedbackError, match="newer"):
        FeedbackStore(path)


def test_feedback_cli_list_stats_export(tmp_path, capsys):
    path = tmp_path / "f.db"
    store = FeedbackStore(path)
    store.add(kind="rating", value=-1, reason="wrong answer", turn_id="t1", model_id="nano@200",
              messages=[{"role": "user", "content": "hi"}], response="bye")
    store.add(kind="undone_turn", turn_id="t2", model_id="nano@200")
    store.close()
    assert main(["feedback", "list", "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rating" in out and "wrong answer" in out and "undone_turn" in out
    assert main(["feedback", "stats", "--db", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total"] == 2 and stats["thumbs_down"] == 1 and stats["by_model"] == {"nano@200": 2}
    target = tmp_path / "out.jsonl"
    assert main(["feedback", "export", "--format", "jsonl", "--db", str(path), "-o", str(target)]) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["rating", "undone_turn"]
    assert lines[0]["messages"] == [{"role": "user", "content": "hi"}] and lines[0]["response"] == "bye"
    assert main(["feedback", "export", "--db", str(path), "--since", "1"]) == 0
    assert [json.loads(x)["turn_id"] for x in capsys.readouterr().out.splitlines()] == ["t2"]
    assert main(["feedback", "list", "--db", str(tmp_path / "missing.db")]) == 1
    assert "no feedback database" in capsys.readouterr().err
    assert main(["feedback", "export", "--db", str(path), "--since", "last tuesday"]) == 2


def test_a_corrupt_database_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "feedback.db"
    bad.write_bytes(b"this is not a database" * 100)
    assert main(["feedback", "stats", "--db", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("assistant: error: cannot open the feedback database") and "Traceback" not in err
    from assistant.agent import AgentError, SessionStore

    with pytest.raises(AgentError, match="cannot open the sessions database"):
        SessionStore(bad)
