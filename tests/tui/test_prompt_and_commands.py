"""The prompt and the commands in the running app (no model needed): history, multi-line entry,
completion, the command palette, /retrain, the sessions list."""

from __future__ import annotations

from assistant.retrain_queue import pending
from assistant.tui.screens.sessions import SessionsScreen
from assistant.tui.widgets.notice import NoticeLine, NoticeMarkdown
from assistant.tui.widgets.user_message import UserMessage
from tests.tui.conftest import make_app, run, start, wait_for


def _notes(app) -> list[str]:
    return [n.text for n in app.chat.transcript.query("NoticeLine, NoticeMarkdown")
            if isinstance(n, (NoticeLine, NoticeMarkdown))]


def test_history_multiline_and_completion(project):
    async def scenario():
        app = make_app(project, None)
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            prompt = app.chat.prompt
            await pilot.press(*"first", "shift+enter", *"second line")
            assert prompt.text == "first\nsecond line"  # shift+Enter adds a line, does not send
            await pilot.press("enter")
            await pilot.press(*"next", "enter")
            assert [m.text for m in app.chat.transcript.query(UserMessage)] == ["first\nsecond line", "next"]
            assert prompt.text == ""
            await pilot.press("up")
            assert prompt.text == "next"
            await pilot.press("up")
            assert prompt.text == "first\nsecond line"
            await pilot.press("down")  # the cursor is on the recalled entry's last line: ↓ walks on
            assert prompt.text == "next"
            await pilot.press("down")
            assert prompt.text == ""  # back to the (empty) draft
            prompt.load_text("")
            await pilot.press("slash", "h", "e")
            menu = app.chat.query_one("#command-menu")
            assert menu.shown and menu.chosen() == "help"
            await pilot.press("tab")
            assert prompt.text == "/help " and not menu.shown
            await pilot.press("enter")
            await wait_for(pilot, lambda: any("### Commands" in n for n in _notes(app)), what="the help")

    run(scenario())


def test_palette_and_retrain_and_unknown_command(project):
    async def scenario():
        app = make_app(project, None)
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            await pilot.press("ctrl+p")
            await pilot.press(*"retrain")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await wait_for(pilot, lambda: pending(), what="the retrain request")
            await wait_for(pilot, lambda: any("Retraining queued" in n for n in _notes(app)), what="the note")
            app.chat.prompt.load_text("/frobnicate")
            await pilot.press("enter")
            await wait_for(pilot, lambda: any("Unknown command /frobnicate" in n for n in _notes(app)))

    run(scenario())
    [request] = pending()
    assert request["project"] == str(project.resolve()) and request["source"] == "tui"


def test_sessions_list_resumes_a_conversation(project):
    from assistant.agent import SessionStore
    from assistant.agent.store import StoredTurn

    store = SessionStore()
    session_id = store.create(project.resolve(), "m.pth")
    store.save_turn(session_id, StoredTurn("t1", 0, [{"role": "user", "content": "what is in greet.py?"},
                                                     {"role": "assistant", "content": "A typo."}]),
                    title="what is in greet.py?")
    store.close()

    async def scenario():
        app = make_app(project, None, resume="list")
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen) and app.screen.query("OptionList"),
                           what="the sessions list")
            assert "what is in greet.py?" in str(app.screen.query_one("OptionList").get_option_at_index(0).prompt)
            await pilot.press("enter")
            await start(pilot)
            assert [m.text for m in app.chat.transcript.query(UserMessage)] == ["what is in greet.py?"]
            assert [(r.text, r.turn_id) for r in app.chat.transcript.replies()] == [("A typo.", "t1")]  # rateable
            assert app.controller.session.id == session_id
            assert any(f"Resumed session {session_id}" in n for n in _notes(app))
            await pilot.press("ctrl+up", "minus")  # an old reply can still be rated
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ReasonScreen", what="the reason prompt")
            await pilot.press("enter")
            await wait_for(pilot, lambda: "t1" in app.ratings, what="the rating")

    run(scenario())
    from feedback.store import FeedbackStore

    with FeedbackStore() as feedback:
        [record] = [r for r in feedback.since(0) if r.kind == "rating"]
    assert (record.turn_id, record.session_id, record.value) == ("t1", session_id, -1)

    async def latest():  # assistant --continue
        app = make_app(project, None, resume="latest")
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            assert app.controller.session.id == session_id
            assert [m.text for m in app.chat.transcript.query(UserMessage)] == ["what is in greet.py?"]

    run(latest())


def test_a_corrupt_checkpoint_and_a_broken_settings_file_degrade_visibly(project):
    (project / "broken.pth").write_bytes(b"not a checkpoint at all")
    (project / ".assistant" / "settings.toml").write_text("[agent\nthis is = not toml")

    async def scenario():
        app = make_app(project, project / "broken.pth")
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            notes = _notes(app)
            assert any(n.startswith("**Cannot load the model**") and "broken.pth" in n for n in notes)
            assert any("cannot read settings file" in n and "using the defaults" in n for n in notes)
            assert app.chat.status.model == "no model (load failed)"
            await pilot.press(*"hi", "enter")  # still answers (with how to get a model), never crashes
            await wait_for(pilot, lambda: len(_notes(app)) > len(notes))

    run(scenario())


def test_a_docker_engine_that_does_not_answer_degrades_visibly(tmp_path):
    from tests.memorised_model import make_project

    project = make_project(tmp_path / "project", {"backend": "docker", "docker_host": f"unix://{tmp_path}/no.sock"})

    async def scenario():
        app = make_app(project, None)
        async with app.run_test(size=(100, 30)) as pilot:
            await start(pilot)
            assert app.chat.status.sandbox == "sandbox: docker · unavailable"
            assert any("Docker engine not reachable" in n for n in _notes(app))
            await pilot.press(*"/sandbox", "enter")
            await wait_for(pilot, lambda: any(n.startswith("### Sandbox") or n.startswith("Sandbox unavailable")
                                              for n in _notes(app)), what="the sandbox report")

    run(scenario())
