"""The agent loop with real parsing, approvals, settings, Docker sandbox, shadow git and stores;
the model's text comes from a script (``ScriptedModel``, a test double for the text only)."""

from __future__ import annotations

import json
import threading

import pytest

from assistant.agent import AgentSession, AgentSettings, SessionStore
from assistant.agent import events as ev
from assistant.settings import load_settings, project_settings_path
from tests.agent.helpers import Approver, Recorder, ScriptedModel, call


def session_for(project, tokenizer, replies, *, factory=None, approver=None, settings=None, **kwargs):
    model = kwargs.pop("model", None) or ScriptedModel(tokenizer, replies)
    session = AgentSession(project, model=model, sandbox_factory=factory, index=None,
                           settings=settings or AgentSettings(max_steps=6), approver=approver or Approver(), **kwargs)
    return session, model


@pytest.mark.docker
def test_allow_once_runs_the_call_in_the_sandbox_and_feeds_the_result_back(project, tokenizer, docker_factory):
    approver = Approver("once")
    session, model = session_for(project, tokenizer, [call("execute_python", "Let me compute it.", code="print(6 * 7)"),
                                                      "6 * 7 is 42."], factory=docker_factory(project), approver=approver)
    rec = Recorder()
    with session:
        finished = session.run_turn("what is 6*7?", on_event=rec, cancel=threading.Event())
    assert finished.stop_reason == "answer" and finished.text == "6 * 7 is 42."
    assert [r.tool for r in approver.requests] == ["execute_python"]
    assert approver.requests[0].summary.startswith("execute_python: print(6 * 7)")
    done = rec.of(ev.ToolCallFinished)[0]
    assert done.status == "ok" and done.ok and '"stdout":"42\\n"' in done.output
    # the model saw the tool result in its second prompt, and streamed text never shows the call JSON
    second_prompt = model.prompts[1][0]
    assert second_prompt[-1]["role"] == "tool" and "42" in second_prompt[-1]["content"]
    assert "Let me compute it." in rec.text and "execute_python" not in rec.text and "6 * 7 is 42." in rec.text
    assert isinstance(rec.events[0], ev.TurnStarted) and rec.events[-1] is finished
    assert not project_settings_path(project).exists()  # "once" persists nothing


@pytest.mark.docker
def test_allow_always_persists_a_rule_and_stops_asking(project, tokenizer, docker_factory):
    approver = Approver("always")
    script = [call("execute_python", code="print(1)"), call("execute_python", code="print(2)"), "printed 1 and 2"]
    session, _ = session_for(project, tokenizer, script, factory=docker_factory(project), approver=approver)
    rec = Recorder()
    with session:
        finished = session.run_turn("print two numbers", on_event=rec)
    assert finished.stop_reason == "answer"
    assert len(approver.requests) == 1  # the second call ran without asking
    assert [e.status for e in rec.of(ev.ToolCallFinished)] == ["ok", "ok"]
    assert load_settings(project)["approvals"]["execute_python"] == "allow"
    assert "always allowed" in " ".join(n.text for n in rec.of(ev.Notice))
    # a new session in the same project reads the rule from the settings file
    from assistant.agent import agent_settings

    assert agent_settings(load_settings(project)).policies["execute_python"] == "allow"


@pytest.mark.docker
def test_reject_stops_the_turn_and_nothing_runs(project, tokenizer, docker_factory):
    approver = Approver("reject")
    session, model = session_for(project, tokenizer, [call("execute_python", code="print('side effect')"), "unused"],
                                 factory=docker_factory(project), approver=approver)
    rec = Recorder()
    with session:
        finished = session.run_turn("do it", on_event=rec)
        assert session.ctx.sandbox is None  # the sandbox was never even started
    assert finished.stop_reason == "rejected" and "rejected execute_python" in finished.text
    assert [e.status for e in rec.of(ev.ToolCallFinished)] == ["rejected"]
    assert len(model.prompts) == 1


@pytest.mark.docker
def test_reject_with_an_instruction_goes_back_to_the_model(project, tokenizer, docker_factory):
    approver = Approver(ev.ApprovalDecision("reject", "use print(2 ** 5) instead"), "once")
    script = [call("execute_python", code="print(2 ** 50)"), call("execute_python", code="print(2 ** 5)"), "32"]
    session, model = session_for(project, tokenizer, script, factory=docker_factory(project), approver=approver)
    rec = Recorder()
    with session:
        finished = session.run_turn("power of two", on_event=rec)
    assert finished.stop_reason == "answer" and finished.text == "32"
    assert [e.status for e in rec.of(ev.ToolCallFinished)] == ["rejected", "ok"]
    assert "use print(2 ** 5) instead" in model.prompts[1][0][-1]["content"]


@pytest.mark.docker
def test_deny_hides_the_tool_from_the_model(project, tokenizer, docker_factory):
    settings = AgentSettings(max_steps=4, policies={"execute_bash": "deny"})
    script = [call("execute_bash", command="rm -rf /"), "I cannot use bash here."]
    session, model = session_for(project, tokenizer, script, factory=docker_factory(project), settings=settings)
    rec = Recorder()
    with session:
        assert "execute_bash" not in [t["name"] for t in session.allowed_tools()]
        finished = session.run_turn("clean up", on_event=rec)
    names = [t["name"] for t in model.prompts[0][1]]
    assert "execute_bash" not in names and "execute_python" in names
    system = model.prompts[0][0][0]["content"]
    assert "execute_bash" not in system
    # a call to the hidden tool never runs: shown as denied, and the model is told why
    assert [(e.name, e.status) for e in rec.of(ev.ToolCallFinished)] == [("execute_bash", "denied")]
    assert "denied by the project's settings" in model.prompts[1][0][-1]["content"]
    assert finished.stop_reason == "answer"


def test_plan_mode_refuses_a_write_before_the_plan_is_approved(project, tokenizer):
    script = [call("write_file", path="calc.py", content="x = 1\n"), call("write_file", path="calc.py", content="x = 1\n")]
    session, _ = session_for(project, tokenizer, script, approver=Approver(default="once"))
    rec = Recorder()
    finished = session.run_turn("change it", on_event=rec, plan=True)
    assert [e.status for e in rec.of(ev.ToolCallFinished)] == ["denied", "denied"]
    assert finished.stop_reason == "repeated_failure" and "plan mode" in finished.text
    assert "def add" in (project / "calc.py").read_text()


def test_malformed_call_is_fed_back_once_and_the_retry_runs(project, tokenizer):
    script = ['<|tool_call|>{"name": "read_file", "arguments": {"path": "calc.py"',  # cut-off JSON
              call("read_file", path="calc.py"), "calc.py defines add and mean."]
    session, model = session_for(project, tokenizer, script)
    rec = Recorder()
    finished = session.run_turn("what is in calc.py?", on_event=rec)
    assert finished.stop_reason == "answer"
    feedback = json.loads(model.prompts[1][0][-1]["content"])
    assert feedback["ok"] is False and "JSON" in feedback["error"] and "hint" in feedback
    assert any("malformed tool call" in n.text for n in rec.of(ev.Notice))
    assert rec.of(ev.ToolCallFinished)[0].status == "ok"  # read_file is read-only: allowed without asking


def test_a_second_malformed_call_in_a_row_stops(project, tokenizer):
    script = ['<|tool_call|>{"name": "read_file"', '<|tool_call|>not json at all', "never reached"]
    session, model = session_for(project, tokenizer, script)
    finished = session.run_turn("read it", on_event=Recorder())
    assert finished.stop_reason == "error" and "malformed tool call twice" in finished.text
    assert len(model.prompts) == 2


def test_the_same_failing_call_twice_stops_with_an_explanation(project, tokenizer):
    failing = call("read_file", path="missing.py")
    session, model = session_for(project, tokenizer, [failing, failing, "never reached"])
    rec = Recorder()
    finished = session.run_turn("read missing.py", on_event=rec)
    assert finished.stop_reason == "repeated_failure"
    assert "read_file failed twice" in finished.text and "does not exist" in finished.text
    assert [e.status for e in rec.of(ev.ToolCallFinished)] == ["error", "error"]
    assert len(model.prompts) == 2


def test_a_failing_call_repeated_after_another_call_still_stops(project, tokenizer):
    failing = call("read_file", path="missing.py")
    session, model = session_for(project, tokenizer, [failing, call("read_file", path="calc.py"), failing, "never"])
    rec = Recorder()
    finished = session.run_turn("read missing.py", on_event=rec)
    assert finished.stop_reason == "repeated_failure"
    assert [e.status for e in rec.of(ev.ToolCallFinished)] == ["error", "ok", "error"]


def test_max_steps_ends_the_turn(project, tokenizer):
    script = [call("list_files", path="."), call("read_file", path="calc.py"), call("read_file", path="README.md")]
    session, model = session_for(project, tokenizer, script, settings=AgentSettings(max_steps=2))
    finished = session.run_turn("look around", on_event=Recorder())
    assert finished.stop_reason == "max_steps" and "2 steps" in finished.text
    assert finished.steps == 2 and len(model.prompts) == 2


def test_max_time_ends_the_turn(project, tokenizer):
    model = ScriptedModel(tokenizer, [call("list_files", path="."), "never reached"], delay_s=0.02)
    session, _ = session_for(project, tokenizer, [], model=model, settings=AgentSettings(max_seconds=0.05))
    finished = session.run_turn("look", on_event=Recorder())
    assert finished.stop_reason == "max_time" and "0.05 s" in finished.text
    assert len(model.prompts) == 1


def test_cancel_during_generation_ends_the_turn(project, tokenizer):
    cancel = threading.Event()
    model = ScriptedModel(tokenizer, ["word " * 200], delay_s=0.001)
    session, _ = session_for(project, tokenizer, [], model=model)

    def on_event(event):
        if isinstance(event, ev.TextDelta):
            cancel.set()

    finished = session.run_turn("write a lot", on_event=on_event, cancel=cancel)
    assert finished.stop_reason == "cancelled"


def test_no_model_explains_how_to_get_one(project):
    session = AgentSession(project, model=None, sandbox_factory=None, index=None, settings=AgentSettings(), approver=None)
    rec = Recorder()
    finished = session.run_turn("hello", on_event=rec)
    assert finished.stop_reason == "error"
    assert "assistant train" in finished.text and "assistant model import" in finished.text
    assert rec.of(ev.Notice)[0].level == "error"


def test_no_sandbox_hides_execution_tools_and_says_so(project, tokenizer):
    session, model = session_for(project, tokenizer, ["fine"], factory=None)
    rec = Recorder()
    session.run_turn("hi", on_event=rec)
    names = [t["name"] for t in model.prompts[0][1]]
    assert "execute_python" not in names and "read_file" in names
    assert any("no sandbox" in n.text for n in rec.of(ev.Notice))


def test_write_asks_with_the_diff_and_undo_restores_the_file(project, tokenizer):
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    original = (project / "calc.py").read_text()
    new = original.replace("return a + b", "return a + b  # checked")
    approver = Approver("once")
    script = [call("write_file", path="calc.py", content=new), call("write_file", path="notes.txt", content="todo\n"),
              "Updated calc.py and added notes.txt."]
    session, _ = session_for(project, tokenizer, script, approver=approver, settings=AgentSettings(policies={"write_file": "ask"}))
    approver.choices.append(ev.ApprovalDecision("once"))
    finished = session.run_turn("annotate add", on_event=Recorder())
    assert finished.stop_reason == "answer"
    assert approver.requests[0].diff and "+    return a + b  # checked" in approver.requests[0].diff
    assert (project / "calc.py").read_text() == new and (project / "notes.txt").exists()
    assert finished.changed_files == ["calc.py", "notes.txt"]
    restored = session.undo_last_turn()
    assert sorted(restored) == ["calc.py", "notes.txt"]
    assert (project / "calc.py").read_text() == original and not (project / "notes.txt").exists()
    assert (project / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"  # the user's .git untouched
    assert not (project / ".git" / "objects").exists()
    assert (project / ".assistant" / "shadow.git" / "HEAD").exists()
    assert "undid this turn" in session.history[-1]["content"]  # the model will know

    from assistant.agent import AgentError

    with pytest.raises(AgentError, match="nothing to undo"):
        session.undo_last_turn()


def test_undo_refuses_a_file_the_user_edited_since(project, tokenizer):
    script = [call("write_file", path="calc.py", content="x = 1\n"), "done"]
    session, _ = session_for(project, tokenizer, script, approver=Approver("once"))
    session.run_turn("rewrite", on_event=Recorder())
    (project / "calc.py").write_text("x = 2  # the user's own edit\n")
    from assistant.agent import AgentError

    with pytest.raises(AgentError, match="changed since"):
        session.undo_last_turn()
    assert (project / "calc.py").read_text() == "x = 2  # the user's own edit\n"
    assert session.undo_last_turn(force=True) == ["calc.py"]
    assert "def add" in (project / "calc.py").read_text()


def test_plan_mode_plans_with_read_only_tools_then_runs_each_step(project, tokenizer):
    approver = Approver("once", "once")
    script = [call("read_file", path="calc.py"),
              "1. Add a docstring to add\n2. Report what changed",
              call("write_file", path="calc.py", content='def add(a, b):\n    """Sum."""\n    return a + b\n'),
              "Added the docstring.",
              "Changed calc.py: add has a docstring."]
    session, model = session_for(project, tokenizer, script, approver=approver)
    rec = Recorder()
    finished = session.run_turn("document add", on_event=rec, cancel=threading.Event(), plan=True)
    planning_tools = {t["name"] for t in model.prompts[0][1]}
    assert "write_file" not in planning_tools and "execute_python" not in planning_tools and "read_file" in planning_tools
    assert "numbered plan" in model.prompts[0][0][0]["content"]
    assert rec.of(ev.PlanProposed)[0].steps == ["Add a docstring to add", "Report what changed"]
    assert approver.requests[0].tool == "plan" and approver.requests[0].arguments["steps"][0] == "Add a docstring to add"
    progress = [(p.index, p.status) for p in rec.of(ev.PlanStep)]
    assert progress == [(1, "running"), (1, "done"), (2, "running"), (2, "done")]
    assert "write_file" in {t["name"] for t in model.prompts[2][1]}  # executing: all allowed tools
    assert finished.stop_reason == "answer" and finished.changed_files == ["calc.py"]
    assert '"""Sum."""' in (project / "calc.py").read_text()


def test_a_rejected_plan_changes_nothing(project, tokenizer):
    session, model = session_for(project, tokenizer, ["1. Delete everything"], approver=Approver("reject"))
    finished = session.run_turn("clean", on_event=Recorder(), plan=True)
    assert finished.stop_reason == "rejected" and "Plan not approved" in finished.text
    assert len(model.prompts) == 1


def test_sessions_are_stored_and_resumed(project, tokenizer, tmp_path):
    store = SessionStore(tmp_path / "sessions.db")
    session, _ = session_for(project, tokenizer, [call("read_file", path="README.md"), "It is calc."], store=store)
    first = session.run_turn("what is this project?", on_event=Recorder())
    store.close()

    store = SessionStore(tmp_path / "sessions.db")
    listed = store.list(project)
    assert [s.id for s in listed] == [session.id] and listed[0].turns == 1
    assert listed[0].title == "what is this project?"
    resumed, model = session_for(project, tokenizer, ["You asked about the project."], store=store,
                                 session_id=store.latest(project).id)
    assert resumed.history[0] == {"role": "user", "content": "what is this project?"}
    resumed.run_turn("what did I ask?", on_event=Recorder())
    prompt = model.prompts[0][0]
    assert prompt[1]["content"] == "what is this project?"  # the earlier turn is in the context
    assert any(m.get("tool_call", {}).get("name") == "read_file" for m in prompt)
    assert [t.id for t in store.turns(session.id)][0] == first.turn_id and len(store.turns(session.id)) == 2


def test_context_fits_the_budget_and_compacts_older_turns(project, tokenizer):
    (project / "AGENTS.md").write_text("Always run the tests with pytest -q.\n")
    denied = {name: "deny" for name in ("analyze_code", "debug_code", "search_docs", "apply_patch", "write_file",
                                        "search_code", "run_tests", "remember")}
    settings = AgentSettings(context_tokens=1300, max_new_tokens=64, policies=denied)
    replies = [call("read_file", path="calc.py"), "calc.py has add and mean. Next: add tests for mean.",
               "Second answer " + "padding " * 150, "Third answer."]
    session, model = session_for(project, tokenizer, replies, settings=settings)
    session.remember("tests run with pytest -q")
    session.run_turn("show calc.py " + "please " * 40, on_event=Recorder())
    session.run_turn("and then? " + "more " * 150, on_event=Recorder())
    rec = Recorder()
    session.run_turn("summarise", on_event=rec)
    from trainer.data.chat_format import render_text

    last_messages, last_tools = model.prompts[-1]
    assert model.count(render_text(last_messages, last_tools, add_generation_prompt=True)) <= 1300
    system = last_messages[0]["content"]
    assert "Always run the tests with pytest -q." in system  # AGENTS.md
    assert "tests run with pytest -q" in system  # episodic memory
    assert "Repository summary" in model.prompts[0][0][0]["content"]  # the first section to go when short of room
    assert "Files touched: calc.py" in system and "Next steps" in system and "add tests for mean" in system
    assert any("compacted" in n.text for n in rec.of(ev.Notice))
    assert last_messages[-1] == {"role": "user", "content": "summarise"}


def test_long_tool_results_are_truncated_to_the_budget(project, tokenizer):
    (project / "big.txt").write_text("".join(f"line {i} of a long file\n" for i in range(3000)))
    settings = AgentSettings(tool_result_tokens=120)
    session, model = session_for(project, tokenizer, [call("read_file", path="big.txt"), "It is long."], settings=settings)
    rec = Recorder()
    session.run_turn("read big.txt", on_event=rec)
    done = rec.of(ev.ToolCallFinished)[0]
    assert done.truncated and "chars truncated" in done.output
    assert model.count(done.output) <= 120
    assert json.loads(done.output)["ok"] is True  # still valid JSON for the model


def test_sessions_command_lists_shows_and_deletes(project, tokenizer, capsys):
    from assistant.cli import main

    session, _ = session_for(project, tokenizer, [call("read_file", path="calc.py"), "calc.py has add."],
                             store=SessionStore())
    session.run_turn("explain calc.py", on_event=Recorder())
    assert main(["sessions", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert session.id in out and "explain calc.py" in out and "1 turns" in out
    assert main(["sessions", "show", session.id]) == 0
    out = capsys.readouterr().out
    assert "user: explain calc.py" in out and 'read_file {"path": "calc.py"}' in out and "calc.py has add." in out
    assert main(["sessions", "show", "nope"]) == 1
    assert "no session 'nope'" in capsys.readouterr().err
    assert main(["sessions", "delete", session.id]) == 0
    assert main(["sessions", "--project", str(project)]) == 0
    assert "no sessions" in capsys.readouterr().out


def test_terminal_approver_reads_the_answer_from_stdin(monkeypatch, capsys):
    import io

    from assistant.commands.agent import TerminalApprover

    request = ev.ApprovalRequest("c1", "write_file", {"path": "a.py"}, "create a.py (1 lines changed)", "+++ b/a.py\n+x\n")
    answers = {"\n": ("once", None), "a\n": ("always", None), "r\nuse b.py\n": ("reject", "use b.py"),
               "r\n\n": ("reject", None), "": ("reject", None)}
    for typed, expected in answers.items():
        monkeypatch.setattr("sys.stdin", io.StringIO(typed))
        decision = TerminalApprover()(request)
        assert (decision.choice, decision.instruction) == expected, typed
    assert "+++ b/a.py" in capsys.readouterr().err  # the diff is shown before the question


def test_the_prompt_size_used_for_the_budget_is_exact(project, tokenizer):
    from assistant.agent.context import ContextBuilder
    from trainer.data.chat_format import render

    model = ScriptedModel(tokenizer, [])
    builder = ContextBuilder(project, AgentSettings(), model.count, 4096, None, model.render_count)
    builder.begin_turn("calc", ["a fact"])
    older = [[{"role": "user", "content": "héllo <|end|> there"},
              {"role": "assistant", "content": "", "tool_call": {"name": "read_file", "arguments": {"path": "calc.py"}}},
              {"role": "tool", "content": '{"ok": true}'}, {"role": "assistant", "content": "done"}]]
    session = AgentSession(project, model=model, sandbox_factory=None, index=None)
    tools = session.allowed_tools()
    assembled = builder.assemble(older, [{"role": "user", "content": "next"}], tools)
    assert assembled.tokens == len(render(assembled.messages, tokenizer, tools=tools, add_generation_prompt=True))


def test_the_model_proposes_a_memory_and_only_a_confirmed_fact_is_kept(project, tokenizer):
    approver = Approver("once", "reject")
    script = [call("remember", fact="Run the tests with pytest -q"), "Noted.",
              call("remember", fact="The user likes tabs"), "ok"]
    session, model = session_for(project, tokenizer, script, approver=approver)
    session.run_turn("remember how to run tests", on_event=Recorder())
    assert approver.requests[0].tool == "remember" and "Run the tests with pytest -q" in approver.requests[0].summary
    session.run_turn("and remember this", on_event=Recorder())
    assert session.memory.facts() == ["Run the tests with pytest -q"]
    assert "- Run the tests with pytest -q" in (project / ".assistant" / "memory.md").read_text()
    assert "Run the tests with pytest -q" in model.prompts[-1][0][0]["content"]  # injected into the next prompt


def test_a_session_killed_mid_turn_keeps_what_already_ran(project, tokenizer, tmp_path):
    import multiprocessing
    import os
    import signal

    from tests.agent.helpers import run_until_killed

    tokenizer_path = tmp_path / "tokenizer.json"
    tokenizer_path.write_text(tokenizer.to_str())
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=run_until_killed, args=(str(project), str(tmp_path / "s.db"), str(tokenizer_path), ready))
    child.start()
    assert ready.wait(120)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    store = SessionStore(tmp_path / "s.db")
    (info,) = store.list(project)
    (turn,) = store.turns(info.id)
    assert turn.messages[0] == {"role": "user", "content": "read calc.py then think forever"}
    assert turn.messages[1]["tool_call"]["name"] == "read_file" and "def add" in turn.messages[2]["content"]
    assert turn.stop_reason is None  # unfinished; resuming continues from here
    resumed = AgentSession(project, model=ScriptedModel(tokenizer, ["ok"]), sandbox_factory=None, index=None,
                           store=store, session_id=info.id)
    assert resumed.run_turn("go on", on_event=Recorder()).stop_reason == "answer"


def test_a_sandbox_that_cannot_start_degrades_visibly(project, tokenizer):
    from sandbox.factory import open_sandbox
    from sandbox.limits import SandboxSettings

    broken = SandboxSettings(backend="docker", docker_host="unix:///nonexistent/docker.sock")
    script = [call("execute_python", code="print(1)"), "The sandbox is down."]
    session, model = session_for(project, tokenizer, script, factory=lambda: open_sandbox(broken, project),
                                 approver=Approver("once"))
    rec = Recorder()
    finished = session.run_turn("run it", on_event=rec)
    assert finished.stop_reason == "answer"
    assert any(n.level == "error" and n.text.startswith("sandbox unavailable") for n in rec.of(ev.Notice))
    assert rec.of(ev.ToolCallFinished)[0].status == "error"


def test_undo_covers_ignored_files_the_agent_wrote(project, tokenizer):
    (project / ".gitignore").write_text(".env\nbuild/\n")
    (project / ".env").write_text("API_URL=http://old\n")
    script = [call("write_file", path="calc.py", content="x = 1\n"), call("write_file", path=".env", content="API_URL=http://new\n"),
              call("write_file", path="build/out.txt", content="generated\n"), "done"]
    session, _ = session_for(project, tokenizer, script, approver=Approver(default="once"))
    finished = session.run_turn("configure", on_event=Recorder())
    assert finished.changed_files == [".env", "build/out.txt", "calc.py"]
    assert sorted(session.undo_last_turn()) == [".env", "build/out.txt", "calc.py"]
    assert (project / ".env").read_text() == "API_URL=http://old\n"
    assert not (project / "build" / "out.txt").exists() and "def add" in (project / "calc.py").read_text()
