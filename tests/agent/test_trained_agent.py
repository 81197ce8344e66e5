"""The agent with a real model trained by the project's trainer (tests/agent/trained.py), the
real Docker sandbox and the real stores: the headless command end to end, cancel, and rating."""

from __future__ import annotations

import json
import threading

import pytest

from assistant.agent import AgentSession, SessionStore, agent_settings
from assistant.agent import events as ev
from assistant.cli import main
from assistant.settings import load_settings
from feedback import FeedbackStore
from tests.agent.helpers import Approver, Recorder
from tests.agent.trained import FINAL_ANSWERS

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def work(trained_agent, tmp_path):
    """A fresh copy of the trained project: an unseen prompt approved with --yes may write anything."""
    return trained_agent.fresh_copy(tmp_path / "work")


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_headless_agent_runs_a_multi_step_objective_in_the_sandbox(trained_agent, capsys, work):
    code = main(["agent", trained_agent.objective, "--project", str(work),
                 "--model", str(trained_agent.checkpoint), "--yes", "--json", "--temperature", "0"])
    events = _events(capsys.readouterr().out)
    assert code == 0
    finished = [e for e in events if e["event"] == "ToolCallFinished"]
    assert [(e["name"], e["status"]) for e in finished] == [("read_file", "ok"), ("execute_python", "ok")]
    assert json.loads(finished[0]["output"])["content"].startswith("     1\tdef add(a, b):")
    assert json.loads(finished[1]["output"])["stdout"] == "5\n"  # computed in the Docker sandbox
    last = events[-1]
    assert last["event"] == "TurnFinished" and last["stop_reason"] == "answer"
    assert last["steps"] == 3
    # the memorised answer states the sandbox's result (one clean-clone run in three recalled
    # "add(2, 3) with 5." for "add(2, 3) returns 5.": a near miss of memorisation, not of the loop)
    assert "add(2, 3)" in last["text"] and " 5" in last["text"] and "calc.py" in last["text"]
    # the run is a stored session that 'assistant sessions' lists and '--resume' can continue
    sessions = SessionStore().list(work)
    assert len(sessions) == 1 and sessions[0].title == trained_agent.objective and sessions[0].turns == 1
    code = main(["agent", "and again", "--resume", "--project", str(work), "--model",
                 str(trained_agent.checkpoint), "--yes", "--json", "--temperature", "0", "--max-steps", "1"])
    assert _events(capsys.readouterr().out)[-1]["event"] == "TurnFinished"
    assert [(s.id, s.turns) for s in SessionStore().list(work)] == [(sessions[0].id, 2)]


def test_headless_agent_without_approval_rejects_execution(trained_agent, capsys, work):
    code = main(["agent", trained_agent.objective, "--project", str(work),
                 "--model", str(trained_agent.checkpoint), "--json", "--temperature", "0"])  # stdin is not a terminal
    events = _events(capsys.readouterr().out)
    assert code == 1
    statuses = [(e["name"], e["status"]) for e in events if e["event"] == "ToolCallFinished"]
    assert statuses == [("read_file", "ok"), ("execute_python", "rejected")]  # read-only allowed, execution asked
    assert events[-1]["stop_reason"] == "rejected"


def test_plain_output_and_bad_input(trained_agent, capsys, tmp_path, work, monkeypatch):
    assert main(["agent", trained_agent.objective, "--project", str(work), "--model",
                 str(trained_agent.checkpoint), "--yes", "--temperature", "0"]) == 0
    captured = capsys.readouterr()
    # the answer, streamed as plain text (which memorised answer the nano model recalls is pinned by
    # the --json test; here it has mixed up the final steps of two objectives in some clean-clone runs)
    assert any(answer in captured.out for answer in FINAL_ANSWERS) and "<|tool_call|>" not in captured.out
    assert "[tool] read_file" in captured.err and "[tool] execute_python: ok" in captured.err
    assert "[answer] 3 model calls" in captured.err
    assert "[sandbox] docker" in captured.err  # where the code ran is said once
    assert main(["agent", "x", "--project", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["agent", "x", "--project", str(work), "--model", str(tmp_path / "none.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["agent", "x", "--project", str(work), "--deny", "bogus"]) == 2
    assert "unknown tool 'bogus'" in capsys.readouterr().err
    monkeypatch.setattr("assistant.default_model.DEFAULT_MODEL", tmp_path / "no-shipped-model.pth")
    assert main(["agent", "x", "--project", str(tmp_path)]) == 1  # no model anywhere: how to get one
    assert "assistant train" in capsys.readouterr().err


def _session(trained_agent, project, max_steps=None, **kwargs) -> AgentSession:
    from assistant.runtime import load
    from sandbox.factory import open_sandbox
    from sandbox.limits import SandboxSettings

    settings_doc = load_settings(project)
    sandbox_settings = SandboxSettings(**settings_doc["sandbox"])
    return AgentSession(project, model=load(trained_agent.checkpoint, device="cpu"),
                        sandbox_factory=lambda: open_sandbox(sandbox_settings, project), index=None,
                        settings=agent_settings(settings_doc, temperature=0.0, max_steps=max_steps), **kwargs)


def test_cancel_stops_the_real_model_within_a_token(trained_agent, work):
    session = _session(trained_agent, work, approver=Approver(default="once"))
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


def test_thumbs_down_on_a_real_turn_keeps_what_retraining_needs(trained_agent, tmp_path, work):
    store = FeedbackStore(tmp_path / "feedback.db")
    session = _session(trained_agent, work, approver=Approver(default="once"), feedback=store)
    with session:
        finished = session.run_turn(trained_agent.objective, on_event=Recorder())
    assert finished.stop_reason == "answer"
    session.rate(finished.turn_id, -1, "too slow")
    record = store.since(0)[-1]
    assert record.model_id.startswith("language_model_last.pth@")
    assert finished.text and record.response == finished.text  # the answer exactly as the user saw it
    assert [c["name"] for c in record.tool_calls] == ["read_file", "execute_python"]
    assert record.messages[-1]["role"] == "tool" and '"stdout":"5\\n"' in record.messages[-1]["content"]


def test_a_write_by_the_real_model_is_approved_with_its_diff_and_undone(trained_agent, tmp_path):
    from tests.agent.trained import NOTES, NOTES_ANSWER, NOTES_OBJECTIVE

    project = trained_agent.fresh_copy(tmp_path / "copy")
    approver = Approver("once")
    store = FeedbackStore(tmp_path / "feedback.db")
    session = _session(trained_agent, project, approver=approver, feedback=store)
    rec = Recorder()
    finished = session.run_turn(NOTES_OBJECTIVE, on_event=rec)
    assert finished.stop_reason == "answer" and finished.text == NOTES_ANSWER
    (request,) = approver.requests
    assert request.tool == "write_file" and "+calc.py: add and mean." in request.diff
    assert (project / "NOTES.md").read_text() == NOTES and finished.changed_files == ["NOTES.md"]
    assert session.undo_last_turn() == ["NOTES.md"]
    assert not (project / "NOTES.md").exists()
    assert [r.kind for r in store.since(0)] == ["undone_turn"]


def test_allow_always_for_the_real_models_write_persists_and_stops_asking(trained_agent, tmp_path):
    from tests.agent.trained import NOTES_OBJECTIVE

    project = trained_agent.fresh_copy(tmp_path / "copy")
    first = Approver("always")
    session = _session(trained_agent, project, approver=first)
    assert session.run_turn(NOTES_OBJECTIVE, on_event=Recorder()).stop_reason == "answer"
    assert load_settings(project)["approvals"]["write_file"] == "allow" and len(first.requests) == 1
    session.undo_last_turn()
    second = Approver()  # would reject anything it is asked
    again = _session(trained_agent, project, approver=second).run_turn(NOTES_OBJECTIVE, on_event=Recorder())
    assert again.stop_reason == "answer" and again.changed_files == ["NOTES.md"] and second.requests == []


def test_rejecting_the_real_models_write_leaves_the_project_alone(trained_agent, tmp_path):
    from tests.agent.trained import NOTES_OBJECTIVE

    project = trained_agent.fresh_copy(tmp_path / "copy")
    rec = Recorder()
    finished = _session(trained_agent, project, approver=Approver("reject")).run_turn(NOTES_OBJECTIVE, on_event=rec)
    assert finished.stop_reason == "rejected" and not (project / "NOTES.md").exists()
    assert [(e.name, e.status) for e in rec.of(ev.ToolCallFinished)] == [("write_file", "rejected")]


def test_max_steps_stops_the_real_model(trained_agent, work):
    rec = Recorder()
    with _session(trained_agent, work, approver=Approver(default="once"), max_steps=2) as session:
        finished = session.run_turn(trained_agent.objective, on_event=rec)
    assert finished.stop_reason == "max_steps" and finished.steps == 2
    assert [e.name for e in rec.of(ev.ToolCallFinished)] == ["read_file", "execute_python"]


def test_deny_hides_a_tool_from_the_real_model(trained_agent, capsys, work):
    main(["agent", trained_agent.objective, "--project", str(work), "--model",
                 str(trained_agent.checkpoint), "--yes", "--json", "--temperature", "0", "--max-steps", "3",
                 "--deny", "execute_python"])
    events = _events(capsys.readouterr().out)
    ran = [(e["name"], e["status"]) for e in events if e["event"] == "ToolCallFinished"]
    assert ("execute_python", "ok") not in ran  # never runs, whatever the model writes
    assert all(status == "denied" for name, status in ran if name == "execute_python")
    store = SessionStore()
    turn = store.turns(store.latest(work).id)[-1]
    assert "execute_python" not in turn.record["tools"] and "read_file" in turn.record["tools"]


def test_plan_mode_with_the_real_model_headless(trained_agent, capsys, work):
    from tests.agent.trained import PLAN_OBJECTIVE, PLAN_STEP

    code = main(["agent", PLAN_OBJECTIVE, "--plan", "--project", str(work), "--model",
                 str(trained_agent.checkpoint), "--yes", "--json", "--temperature", "0"])
    events = _events(capsys.readouterr().out)
    assert code == 0
    kinds = [e["event"] for e in events]
    assert kinds.index("PlanProposed") < kinds.index("PlanStep") < kinds.index("ToolCallStarted")
    assert next(e for e in events if e["event"] == "PlanProposed")["steps"] == [PLAN_STEP]
    progress = [(e["index"], e["total"], e["status"]) for e in events if e["event"] == "PlanStep"]
    assert progress == [(1, 1, "running"), (1, 1, "done")]
    (ran,) = [e for e in events if e["event"] == "ToolCallFinished"]
    assert ran["name"] == "execute_python" and json.loads(ran["output"])["stdout"] == "True\n"
    # the plan, its step and the step's tool call are what plan mode owns; the closing words are the
    # nano model's memorisation, whose near misses recall another objective's answer (a clean-clone run)
    assert events[-1]["stop_reason"] == "answer" and events[-1]["text"].endswith(FINAL_ANSWERS)
    store = SessionStore()
    turn = store.turns(store.latest(work).id)[-1]
    assert turn.record["plan_steps"] == [PLAN_STEP]
