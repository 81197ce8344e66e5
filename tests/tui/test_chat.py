"""The chat with a real (memorised) nano model: streamed replies, cancelling, ratings, no-model start."""

from __future__ import annotations

from assistant.agent import events as ev
from assistant.tui.widgets.assistant_reply import AssistantReply
from assistant.tui.widgets.notice import NoticeMarkdown
from tests.memorised_model import COUNT, HELLO, HELLO_REPLY, MAX_NEW_TOKENS
from tests.tui.conftest import make_app, run, send, start, turn, wait_for


def _count_deltas(app) -> list:
    """Record the text deltas the agent sends (the app still gets every event)."""
    seen = []
    forward = app.controller.on_event

    def on_event(event):
        if isinstance(event, ev.TextDelta):
            seen.append(event.text)
        forward(event)

    app.controller.on_event = on_event
    return seen


def test_a_message_gets_a_streamed_markdown_reply(project, memorised_model):
    async def scenario():
        app = make_app(project, memorised_model)
        async with app.run_test(size=(110, 36)) as pilot:
            await start(pilot)
            deltas = _count_deltas(app)
            finished = await turn(pilot, HELLO)
            assert finished.stop_reason == "answer"
            replies = app.chat.transcript.query(AssistantReply)
            assert [r.text for r in replies] == [HELLO_REPLY]
            assert len(deltas) > 5 and "".join(deltas) == HELLO_REPLY  # arrived piece by piece
            status = app.chat.status
            assert "dense" in status.model and "float32" in status.model and "language_model_last.pth" in status.model
            assert status.device == "cpu" and status.speed.endswith("tok/s")
            assert status.index == "index: none" and status.sandbox == "NO SANDBOX"
            assert app.chat.transcript.is_anchored  # the view followed the reply to the bottom

    run(scenario())


def test_escape_cancels_a_long_generation(project, memorised_model):
    async def scenario():
        app = make_app(project, memorised_model)
        async with app.run_test(size=(110, 36)) as pilot:
            await start(pilot)
            deltas = _count_deltas(app)
            prompt = app.chat.prompt
            prompt.load_text(COUNT)
            prompt.submit()  # as Enter does (pilot.press would wait for the app to go idle: the whole reply)
            await wait_for(pilot, lambda: deltas, what="the first streamed text")
            at_cancel = []
            cancel = app.controller.cancel_turn
            app.controller.cancel_turn = lambda: (at_cancel.append(len(deltas)), cancel())
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.turns_finished and not app.generating, what="the cancelled turn")
            finished = app.turns_finished[-1]
            assert finished.stop_reason == "cancelled"
            assert finished.tokens < MAX_NEW_TOKENS  # stopped early, not at the length limit
            # within one token: the one being computed when Esc was pressed (and one the detokenizer held)
            assert finished.tokens <= at_cancel[0] + 2
            assert app.chat.status.busy == ""
            # usable again at once: a new conversation (the memorised model knows only first turns)
            await send(pilot, "/clear")
            await wait_for(pilot, lambda: app.controller.session.turns == [], what="the new conversation")
            finished = await turn(pilot, HELLO)
            assert finished.stop_reason == "answer" and finished.text == HELLO_REPLY

    run(scenario())


def test_thumbs_down_is_stored_with_its_context(project, memorised_model):
    from feedback.store import FeedbackStore

    async def scenario():
        app = make_app(project, memorised_model)
        async with app.run_test(size=(110, 36)) as pilot:
            await start(pilot)
            finished = await turn(pilot, HELLO)
            await pilot.press("ctrl+up")  # focus the reply
            reply = app.focused
            assert isinstance(reply, AssistantReply) and reply.turn_id == finished.turn_id
            await pilot.press("minus")
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ReasonScreen", what="the reason prompt")
            await pilot.press(*"too chatty")
            await pilot.press("enter")
            await wait_for(pilot, lambda: finished.turn_id in app.ratings, what="the rating to be saved")
            assert reply.rating == -1 and reply.query_one("#thumb-down").has_class("-chosen")
            await pilot.click("#thumb-up")  # the buttons rate too (a changed mind is a newer record)
            await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ReasonScreen", what="the reason prompt")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.ratings[finished.turn_id][0] == 1, what="the second rating")
            return finished, app.controller.session.id

    finished, session_id = run(scenario())
    with FeedbackStore() as store:
        records = [r for r in store.since(0) if r.kind == "rating"]
    down, up = records
    assert (down.value, down.reason, down.turn_id, down.session_id) == (-1, "too chatty", finished.turn_id, session_id)
    assert down.response == HELLO_REPLY
    assert {"role": "user", "content": HELLO} in down.messages  # the prompt the model saw
    assert down.messages[0]["role"] == "system" and "language_model_last.pth" in down.model_id
    assert (up.value, up.reason) == (1, None)


def test_without_a_model_the_app_opens_and_explains(project):
    async def scenario():
        app = make_app(project, None)
        async with app.run_test(size=(110, 36)) as pilot:
            await start(pilot)
            notes = [n.text for n in app.chat.transcript.query(NoticeMarkdown)]
            assert any("No model found" in n and "assistant train" in n and "assistant model import" in n
                       and "models/" in n for n in notes)
            assert app.chat.status.model == "no model"
            await send(pilot, "hello?")
            await pilot.pause(0.2)
            assert len(app.chat.transcript.query(NoticeMarkdown)) == len(notes) + 1  # explained again
            assert not app.generating
            await send(pilot, "/sandbox")  # the rest still works
            await wait_for(pilot, lambda: len(app.chat.transcript.query(NoticeMarkdown)) == len(notes) + 2)

    run(scenario())


def test_feedback_and_model_commands(project, memorised_model):
    from feedback.store import FeedbackStore

    async def scenario():
        app = make_app(project, None)
        async with app.run_test(size=(110, 36)) as pilot:
            await start(pilot)
            await send(pilot, f"/model {project / 'missing.pth'}")
            await wait_for(pilot, lambda: any("no checkpoint at" in getattr(n, "text", "")
                                              for n in app.chat.transcript.children), what="the refusal")
            assert app.chat.status.model == "no model"  # nothing changed
            await send(pilot, f"/model {memorised_model}")
            await wait_for(pilot, lambda: "dense" in app.chat.status.model, what="the switch")
            finished = await turn(pilot, HELLO)
            assert finished.text == HELLO_REPLY
            await send(pilot, "/feedback - too long for a greeting")
            await wait_for(pilot, lambda: finished.turn_id in app.ratings, what="the rating")
            await send(pilot, "/model")
            await wait_for(pilot, lambda: any("### Model" in getattr(n, "text", "")
                                              for n in app.chat.transcript.children), what="the model table")
            return finished

    finished = run(scenario())
    with FeedbackStore() as store:
        [record] = [r for r in store.since(0) if r.kind == "rating"]
    assert (record.turn_id, record.value, record.reason) == (finished.turn_id, -1, "too long for a greeting")
