"""The TUI's plain-Python pieces: slash commands, prompt history, the retrain queue, the model choice, the CLI edge."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.cli import main
from assistant.default_model import DEFAULT_MODEL, choose_model, how_to_get_a_model
from assistant.retrain_queue import claim, pending, queue_dir, request_retrain
from assistant.tui import commands
from assistant.tui.history import PromptHistory


def test_slash_commands_parse_and_complete():
    command, argument = commands.parse("/search  parse reply ")
    assert command.name == "search" and argument == "parse reply"
    assert commands.parse("/nope") is None and commands.parse("hello /undo") is None
    assert [c.name for c in commands.complete("/s")] == ["search", "sandbox", "sessions"]
    assert commands.complete("/undo now") == [] and commands.complete("undo") == []
    wanted = {"help", "clear", "index", "search", "plan", "undo", "model", "feedback", "retrain", "sandbox", "quit"}
    assert wanted <= {c.name for c in commands.COMMANDS}
    table = commands.help_markdown([("Esc", "cancel")])
    assert "`/retrain [NOTE]`" in table and "| `Esc` | cancel |" in table


def test_prompt_history_walks_back_and_forth_and_persists(tmp_path):
    path = tmp_path / "history.jsonl"
    history = PromptHistory(path)
    for text in ("first", "two\nlines", "two\nlines", "third"):
        history.add(text)
    assert history.entries == ["first", "two\nlines", "third"]  # a repeat is kept once
    assert history.previous("draft") == "third"
    assert history.previous("third") == "two\nlines"
    assert history.previous("x") == "first"
    assert history.previous("x") is None  # nothing older
    assert history.next() == "two\nlines"
    assert history.next() == "third"
    assert history.next() == "draft"  # back to what was being typed
    path.write_text(path.read_text() + "not json\n")
    assert PromptHistory(path).entries == ["first", "two\nlines", "third"]


def test_retrain_requests_queue_in_order_and_are_claimed_once(tmp_path):
    first = request_retrain(tmp_path, tmp_path / "m.pth", "session-1", note="after today's ratings")
    second = request_retrain(tmp_path, None, None)
    assert first.parent == queue_dir() and first.name < second.name
    requests = pending()
    assert [r["session_id"] for r in requests] == ["session-1", None]
    record = json.loads(first.read_text())
    assert record["project"] == str(tmp_path.resolve()) and record["model"] == str(tmp_path / "m.pth")
    assert record["note"] == "after today's ratings" and record["version"] == 1
    taken = claim(requests[0])
    assert taken is not None and taken.exists() and not first.exists()
    assert claim(requests[0]) is None  # a second job does not take it again
    assert [r["id"] for r in pending()] == [requests[1]["id"]]


def test_model_choice_flag_then_settings_then_the_shipped_default(tmp_path):
    assert choose_model(str(tmp_path / "x.pth"), {"model": {"path": "/s.pth"}}).source == "--model"
    chosen = choose_model(None, {"model": {"path": "/s.pth"}})
    assert (chosen.path, chosen.source) == (Path("/s.pth"), "settings")
    default = choose_model(None, {})
    assert default.path == DEFAULT_MODEL and default.path.parent.parent.name == "models" and default.exists
    # a model promoted by `assistant retrain`: tests/rlhf/test_continual.py (the loop on the shipped model)
    text = how_to_get_a_model(choose_model(str(tmp_path / "missing.pth"), {}))
    assert "missing.pth" in text and "assistant train" in text and "assistant model import" in text
    assert "[model]" in text and "path =" in text


def test_without_a_terminal_the_chat_says_so_in_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2  # pytest's stdin is not a terminal
    err = capsys.readouterr().err.strip()
    assert err.startswith("assistant: error: the chat needs a terminal") and "\n" not in err
    assert "assistant agent" in err


def test_resume_flags_parse():
    from assistant.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--resume"]).resume == "list"
    assert parser.parse_args(["--resume", "abc123"]).resume == "abc123"
    args = parser.parse_args(["--continue", "--model", "m.pth"])
    assert args.continue_ and args.model == "m.pth"
