"""``assistant agent "objective"``: run the agent loop headless; ``assistant sessions``: list/show/delete.

Headless runs use the same ``AgentSession`` as the TUI. Approvals: ``--yes`` (or
``--approve-policy allow``) runs every call that asks, ``reject`` runs none, ``ask`` prompts on
the terminal (the default when stdin is a terminal; otherwise ``reject``). Tools whose policy is
``deny`` are hidden either way. ``--json`` prints one JSON object per event (JSON lines), the
``TurnFinished`` last. Exit code: 0 for a final answer, 1 when the turn stopped otherwise,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant.commands._args import positive_float, positive_int

APPROVE_POLICIES = ("ask", "allow", "reject")


def register(sub) -> None:
    p = sub.add_parser(
        "agent",
        help="run an objective with the agent loop, headless (tools in the sandbox, approvals by policy)",
        description="Runs the objective through the agent loop: the model calls tools (in the sandbox), "
        "results go back to it, until a final answer or a limit. Tool calls and notices go to stderr, "
        "the answer to stdout (or JSON lines with --json).",
    )
    p.add_argument("objective", help="what the agent should do")
    p.add_argument("--project", default=".", help="project directory (default: .)")
    p.add_argument("--model", dest="agent_model", metavar="PATH", help="checkpoint (default: the global --model, "
                   "then [model] path in the settings)")
    p.add_argument("--plan", action="store_true", help="plan mode: read-only tools, a numbered plan, then its steps")
    approve = p.add_mutually_exclusive_group()
    approve.add_argument("--yes", "-y", action="store_true", help="approve every tool call that asks (once each)")
    approve.add_argument("--approve-policy", choices=APPROVE_POLICIES,
                         help="ask on the terminal, allow all, or reject all (default: ask on a terminal, else reject)")
    p.add_argument("--deny", action="append", default=[], metavar="TOOL", help="hide a tool from the model (repeatable)")
    p.add_argument("--max-steps", type=positive_int, help="model calls per turn (default 12)")
    p.add_argument("--max-seconds", type=positive_float, help="wall clock per turn (default 600)")
    p.add_argument("--max-new-tokens", type=positive_int, help="tokens per model reply (default 512)")
    p.add_argument("--temperature", type=float, help="sampling temperature; 0 for greedy (default 0.2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-sandbox", action="store_true", help="no sandbox: code execution tools are hidden")
    p.add_argument("--no-index", action="store_true", help="do not retrieve code from the index")
    p.add_argument("--resume", nargs="?", const="latest", metavar="SESSION", help="continue a stored session "
                   "(default: this project's latest)")
    p.add_argument("--json", action="store_true", help="print every event as a JSON line")
    p.set_defaults(handler=run)

    s = sub.add_parser("sessions", help="list, show or delete stored agent sessions",
                       description="Sessions are stored in $XDG_DATA_HOME/assistant/sessions.db.")
    s.add_argument("action", nargs="?", choices=("list", "show", "delete"), default="list")
    s.add_argument("session", nargs="?", help="session id (show, delete)")
    s.add_argument("--project", default=".", help="only this project's sessions (default: .)")
    s.add_argument("--all", action="store_true", help="sessions of every project")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=run_sessions)


def _project(path: str) -> Path:
    from common.errors import UsageError

    project = Path(path).expanduser()
    if not project.is_dir():
        raise UsageError(f"{path} is not a directory", "give the project's directory, e.g. --project .")
    return project.resolve()


def model_path(args: argparse.Namespace, settings: dict) -> str | None:
    """--model, then the global --model, then ``[model] path`` in the settings."""
    chosen = getattr(args, "agent_model", None) or getattr(args, "model", None)
    if not chosen:
        table = settings.get("model", {}) or {}
        chosen = table.get("path") if isinstance(table, dict) else None
    if not chosen:  # the model retraining promoted, else the shipped default (models/), when present
        from assistant.default_model import choose_model

        choice = choose_model(None, {})
        chosen = str(choice.path) if choice.exists else None
    return chosen or None


class TerminalApprover:
    """Asks on the terminal: [o]nce (default) / [a]lways / [r]eject (+ optional instruction)."""

    def __call__(self, request):
        from assistant.agent.events import ApprovalDecision

        if request.diff:
            sys.stderr.write(request.diff)
        sys.stderr.write(f"\napprove {request.summary}? [O]nce / [a]lways / [r]eject: ")
        sys.stderr.flush()
        answer = (sys.stdin.readline() or "r").strip().lower()
        if answer.startswith("a"):
            return ApprovalDecision("always")
        if answer.startswith("r"):
            sys.stderr.write("instruction for the model (empty: stop): ")
            sys.stderr.flush()
            return ApprovalDecision("reject", (sys.stdin.readline() or "").strip() or None)
        return ApprovalDecision("once")


def _printer(json_lines: bool):
    from assistant.agent import events as ev

    def show(event) -> None:
        if json_lines:
            print(json.dumps(ev.event_to_dict(event), ensure_ascii=False, default=str), flush=True)
            return
        if isinstance(event, ev.TextDelta):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ev.ToolCallStarted):
            print(f"\n[tool] {event.name} {json.dumps(event.arguments, ensure_ascii=False)[:200]}", file=sys.stderr)
        elif isinstance(event, ev.ToolCallFinished):
            print(f"[tool] {event.name}: {event.status} ({event.duration_s:.2f} s){' truncated' if event.truncated else ''}"
                  f"\n{event.output[:600]}", file=sys.stderr)
        elif isinstance(event, ev.Notice):
            print(f"[{event.level}] {event.text}", file=sys.stderr)
        elif isinstance(event, ev.PlanProposed):
            print("[plan]\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(event.steps, 1)), file=sys.stderr)
        elif isinstance(event, ev.PlanStep):
            print(f"[plan] step {event.index}/{event.total} {event.status}: {event.text}", file=sys.stderr)
        elif isinstance(event, ev.TurnFinished):
            print(file=sys.stderr)
            print(f"[{event.stop_reason}] {event.steps} model calls, {event.tokens} tokens"
                  f"{', changed: ' + ', '.join(event.changed_files) if event.changed_files else ''}", file=sys.stderr)

    return show


def run(args: argparse.Namespace) -> int:
    import threading

    from assistant.settings import load_settings
    from common.errors import UsageError

    project = _project(args.project)
    if not args.objective.strip():
        raise UsageError("the objective is empty", "say what the agent should do")
    if args.temperature is not None and args.temperature < 0:
        raise UsageError(f"--temperature {args.temperature} must not be negative")
    settings_doc = load_settings(project)

    from assistant.agent import AgentSession, SessionStore, agent_settings
    from assistant.agent.session import NO_MODEL

    settings = agent_settings(settings_doc, max_steps=args.max_steps, max_seconds=args.max_seconds,
                              max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    for tool in args.deny:
        from assistant.agent.tools import AGENT_TOOL_NAMES
        from sandbox.tools import TOOLS

        if tool not in TOOLS and tool not in AGENT_TOOL_NAMES:
            raise UsageError(f"--deny: unknown tool '{tool}'", f"one of {', '.join([*TOOLS, *AGENT_TOOL_NAMES])}")
        settings.policies[tool] = "deny"
    path = model_path(args, settings_doc)
    model = None
    if path:
        if not Path(path).exists():
            raise UsageError(f"model {path} does not exist", "train one with 'assistant train' or import one with "
                             "'assistant model import'")
        from assistant.runtime import load

        model = load(path, device=args.device)
    policy = "allow" if args.yes else args.approve_policy or ("ask" if sys.stdin.isatty() else "reject")
    from assistant.agent import approve_all, reject_all

    approver = TerminalApprover() if policy == "ask" else approve_all if policy == "allow" else reject_all
    sandbox_factory = None if args.no_sandbox else _sandbox_factory(project, settings_doc)
    index = None if args.no_index else _index(project, settings_doc)
    store = SessionStore()
    session_id = None
    if args.resume:
        found = store.latest(project) if args.resume == "latest" else store.get(args.resume)
        if found is None:
            raise UsageError(f"no stored session for {project}", "run without --resume to start one")
        if Path(found.project) != project:
            raise UsageError(f"session {found.id} belongs to {found.project}", f"run with --project {found.project}")
        session_id = found.id
    feedback = _feedback()
    session = AgentSession(project, model=model, sandbox_factory=sandbox_factory, index=index, settings=settings,
                           approver=approver, store=store, feedback=feedback, session_id=session_id)
    show = _printer(args.json)
    if model is None and not args.json:
        print(f"assistant: error: {NO_MODEL}", file=sys.stderr)
        session.close()
        return 1
    cancel = threading.Event()
    outcome = {}

    def work() -> None:
        outcome["finished"] = session.run_turn(args.objective, on_event=show, cancel=cancel, plan=args.plan)

    worker = threading.Thread(target=work, name="agent-turn", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        cancel.set()
        worker.join(30)
        session.close()
        print("assistant: interrupted", file=sys.stderr)
        return 130
    finally:
        session.close()
    finished = outcome.get("finished")
    if finished is None:
        return 1
    if not args.json:
        if finished.stop_reason != "answer" or not finished.text.strip():
            print(finished.text)
        else:
            print()
        print(f"session {session.id}, turn {finished.turn_id}", file=sys.stderr)
    return 0 if finished.stop_reason == "answer" else 1


def _sandbox_factory(project: Path, settings_doc: dict):
    from assistant.settings import section
    from sandbox.limits import SandboxSettings

    sandbox_settings = section(settings_doc, "sandbox", SandboxSettings)

    def factory():
        from sandbox.factory import open_sandbox

        sandbox = open_sandbox(sandbox_settings, project)
        info = sandbox.info()  # where the model's code runs, said once, on stderr
        print(f"[sandbox] {info.label}" + (f" — {info.warning}" if info.warning else ""), file=sys.stderr)
        return sandbox

    return factory


def _index(project: Path, settings_doc: dict):
    from assistant.settings import section
    from index import IndexSettings, open_index

    try:
        index = open_index(project, section(settings_doc, "index", IndexSettings))
        return index if index.status().state != "none" else None
    except Exception as exc:  # a broken index degrades retrieval only
        print(f"assistant: warning: index unavailable: {exc}", file=sys.stderr)
        return None


def _feedback():
    from feedback import FeedbackError, FeedbackStore

    try:
        return FeedbackStore()
    except FeedbackError as exc:
        print(f"assistant: warning: feedback not recorded: {exc}", file=sys.stderr)
        return None


def run_sessions(args: argparse.Namespace) -> int:
    import time

    from assistant.agent import SessionStore
    from common.errors import UsageError

    store = SessionStore()
    try:
        if args.action in ("show", "delete"):
            if not args.session:
                raise UsageError(f"'sessions {args.action}' needs a session id", "see 'assistant sessions list'")
            info = store.get(args.session)
            if args.action == "delete":
                store.delete(info.id)
                print(f"deleted session {info.id}")
                return 0
            turns = store.turns(info.id)
            if args.json:
                print(json.dumps({"session": info.__dict__, "turns": [t.__dict__ for t in turns]}, default=str))
                return 0
            print(f"session {info.id}  {info.project}  {info.title}")
            for turn in turns:
                for message in turn.messages:
                    content = message.get("content") if isinstance(message.get("content"), str) else ""
                    call = message.get("tool_call")
                    text = f"{call['name']} {json.dumps(call.get('arguments'))}" if call else content
                    print(f"  {message['role']:>9}: {' '.join(text.split())[:160]}")
            return 0
        project = None if args.all else _project(args.project)
        sessions = store.list(project)
        if args.json:
            for info in sessions:
                print(json.dumps(info.__dict__))
            return 0
        if not sessions:
            print("no sessions" + ("" if args.all else f" for {project} (use --all for every project)"))
            return 0
        for info in sessions:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.updated))
            print(f"{info.id}  {when}  {info.turns:>3} turns  {info.title[:60]}" + (f"  ({info.project})" if args.all else ""))
        return 0
    finally:
        store.close()
