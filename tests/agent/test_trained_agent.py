"""The agent with a real model trained by the project's trainer (tests/agent/trained.py), the
real Docker sandbox and the real stores: the headless command end to end, cancel, and rating."""

from __future__ import annotations

import json
import threading

from assistant.agent import AgentSession, SessionStore, agent_settings
from assistant.agent import events as ev
from assistant.cli import main
from assistant.settings import load_settings
from feedback import FeedbackStore
from tests.agent.helpers import Approver, Recorder


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_headless_agent_runs_a_multi_step_objective_in_the_sandbox(trained_agent, capsys):
    code = main(["agent", trained_agent.objective, "--project", str(trained_agent.project),
                 "--model", str(trained_agent.checkpoint), "--yes", "--json", "--temperature", "0"])
    events = _events(capsys.readouterr().out)
    assert code == 0
    finished = [e for e in events if e["event"] == "ToolCallFinished"]
    assert [(e["name"], e["status"]) for e in finished] == [("read_file", "ok"), ("execute_python", "ok")]
    assert json.loads(finished[0]["output"])["content"].startswith("     1\tdef add(a, b):")
    assert json.loads(finished[1]["output"])["stdout"] == "5\n"  # computed in the Docker sandbox
    last = events[-1]
    assert last["event"] == "TurnFinished" and last["stop_reason"] == "answer"
    assert last["text"] == trained_agent.answer and last["steps"] == 3
    # the run is a stored session that 'assistant sessions' lists and '--resume' can continue
    sessions = SessionStore().list(trained_agent.project)
    assert len(sessions) == 1 and sessions[0].title == trained_agent.objective and sessions[0].turns == 1
    code = main(["agent", "and again", "--resume", "--project", str(trained_agent.project), "--model",
                 str(trained_agent.checkpoint), "--yes", "--json", "--temperature", "0", "--max-steps", "1"])
    assert _events(capsys.readouterr().out)[-1]["event"] == "TurnFinished"
    assert [(s.id, s.turns) for s in SessionStore().list(trained_agent.project)] == [(sessions[0].id, 2)]


def test_headless_agent_without_approval_rejects_execution(trained_agent, capsys):
    code = main(["agent", trained_agent.objective, "--project", str(trained_agent.project),
                 "--model", str(trained_agent.checkpoint), "--json", "--temperature", "0"])  # stdin is not a terminal
    events = _events(capsys.readouterr().out)
    assert code == 1
    statuses = [(e["name"], e["status"]) for e in events if e["event"] == "ToolCallFinished"]
    assert statuses == [("read_file", "ok"), ("execute_python", "rejected")]  # read-only allowed, execution asked
    assert events[-1]["stop_reason"] == "rejected"


def test_plain_output_and_bad_input(trained_agent, capsys, tmp_path):
    assert main(["agent", "x", "--project", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["agent", "x", "--project", str(trained_agent.project), "--model", str(tmp_path / "none.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["agent", "x", "--project", str(tmp_path)]) == 1  # no model anywhere: how to get one
    assert "assistant train" in capsys.readouterr().err


def _session(trained_agent, **kwargs) -> AgentSession:
    from assistant.runtime import load
    from sandbox.factory import open_sandbox
    from sandbox.limits import SandboxSettings

    settings_doc = load_settings(trained_agent.project)
    sandbox_settings = SandboxSettings(**settings_doc["sandbox"])
    return AgentSession(trained_agent.project, model=load(trained_agent.checkpoint, device="cpu"),
                        sandbox_factory=lambda: open_sandbox(sandbox_settings, trained_agent.project), index=None,
                        settings=agent_settings(settings_doc, temperature=0.0), **kwargs)


def test_cancel_stops_the_real_model_within_a_token(trained_agent):
    session = _session(trained_agent, approver=Approver(default="once"))
    cancel = threading.Event()
    rec = Recorder()

    def on_event(event):
        rec(event)
        if isinstance(event, ev.TextDelta):
            cancel.set()

    with session:
        finished = session.run_turn(trained_agent.objective, on_event=on_event, cancel=cancel)
    assert finished.stop_reason == "cancelled"
    assert not rec.of(ev.ToolCallStarted)
    assert len(rec.of(ev.TextDelta)) == 1 and finished.tokens <= 3


def test_thumbs_down_on_a_real_turn_keeps_what_retraining_needs(trained_agent, tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    session = _session(trained_agent, approver=Approver(default="once"), feedback=store)
    with session:
        finished = session.run_turn(trained_agent.objective, on_event=Recorder())
    assert finished.stop_reason == "answer"
    session.rate(finished.turn_id, -1, "too slow")
    record = store.since(0)[-1]
    assert record.model_id.startswith("language_model_last.pth@")
    assert record.response == trained_agent.answer
    assert [c["name"] for c in record.tool_calls] == ["read_file", "execute_python"]
    assert record.messages[-1]["role"] == "tool" and '"stdout":"5\\n"' in record.messages[-1]["content"]
