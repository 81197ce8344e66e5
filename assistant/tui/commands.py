"""The slash commands: one table for the prompt's completion, /help and the command palette.

Each command names the app action that runs it (``action_<name>`` on the app, given the text
after the command), so typing ``/undo``, picking "Undo" in the palette (ctrl+p) and any key
binding all end in the same method.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlashCommand:
    name: str  # without the slash
    usage: str  # argument hint, "" when none
    help: str
    action: str  # app action it runs (the argument text is passed as one string)
    palette: bool = True  # offered in the command palette (commands that need an argument are not)


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("help", "", "show the commands and key bindings", "slash_help"),
    SlashCommand("clear", "", "clear the screen and start a new conversation", "slash_clear"),
    SlashCommand("index", "", "update the codebase index now (incremental)", "slash_index"),
    SlashCommand("search", "QUERY", "search the codebase index", "slash_search", palette=False),
    SlashCommand("plan", "OBJECTIVE", "plan first: read-only tools, a numbered plan to approve, then its steps",
                 "slash_plan", palette=False),
    SlashCommand("undo", "", "revert the file changes of the last turn that made any", "slash_undo"),
    SlashCommand("model", "[PATH]", "show the model, or switch to the checkpoint at PATH", "slash_model"),
    SlashCommand("feedback", "[+|-] [REASON]", "rate the last reply, or show this session's ratings",
                 "slash_feedback"),
    SlashCommand("retrain", "[NOTE]", "queue a retraining run on your feedback (assistant retrain takes it)",
                 "slash_retrain"),
    SlashCommand("sandbox", "", "show where model-run code executes and its limits", "slash_sandbox"),
    SlashCommand("sessions", "", "list this project's sessions and resume one", "slash_sessions"),
    SlashCommand("quit", "", "leave the assistant", "slash_quit"),
)
BY_NAME = {command.name: command for command in COMMANDS}


def parse(text: str) -> tuple[SlashCommand, str] | None:
    """``("/search foo bar")`` -> (the search command, "foo bar"); None when it is not a command."""
    if not text.startswith("/"):
        return None
    head, _, rest = text[1:].partition(" ")
    command = BY_NAME.get(head.strip().lower())
    return (command, rest.strip()) if command else None


def complete(prefix: str) -> list[SlashCommand]:
    """Commands whose name starts with what was typed after the slash."""
    if not prefix.startswith("/") or " " in prefix or "\n" in prefix:
        return []
    word = prefix[1:].lower()
    return [command for command in COMMANDS if command.name.startswith(word)]


def help_markdown(bindings: list[tuple[str, str]]) -> str:
    rows = "\n".join(f"| `/{c.name}{' ' + c.usage if c.usage else ''}` | {c.help} |" for c in COMMANDS)
    keys = "\n".join(f"| `{key}` | {what} |" for key, what in bindings)
    return f"""\
### Commands

| command | what it does |
|---|---|
{rows}

### Keys

| key | what it does |
|---|---|
{keys}
"""
