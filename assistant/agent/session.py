"""``AgentSession``: the agent loop shared by the TUI, the headless ``assistant agent`` and the eval.

One turn: assemble the context → the model writes a reply → ``parse_reply`` → a final answer ends
the turn; a tool call goes through its approval policy (allow / ask / deny) → ``call_tool`` in the
sandbox → the result, cut to its token budget, goes back to the model → … until a final answer,
``max_steps``, ``max_seconds``, the caller's ``cancel`` or a stop condition:
  * a malformed call is fed back once for a retry; a second one in a row ends the turn ("error");
  * the same call (tool and arguments) failing a second time in the turn ends it ("repeated_failure");
  * a rejected call without an instruction ends the turn ("rejected").
Plan mode first runs with read-only tools for a numbered plan, asks the approver (tool "plan"),
then runs each step as its own sub-loop with ``PlanStep`` progress events.

Every turn that changed files is checkpointed in a shadow git store (``undo_last_turn``); turns are
persisted in the ``SessionStore``; ratings and implicit signals go to the ``FeedbackStore``.
Plain Python: nothing here imports Textual.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.agent import events as ev
from assistant.agent.context import ContextBuilder, truncate_result
from assistant.agent.errors import AgentError
from assistant.agent.memory import Memory
from assistant.agent.model import Generated, as_reply_source
from assistant.agent.plan import parse_plan
from assistant.agent.settings import AgentSettings, default_policy
from assistant.agent.shadow import ShadowGit

NO_MODEL = (
    "No model is loaded, so I cannot answer yet. Get one with any of: the default model "
    "(models/, see README), 'assistant train --stage language ...' to train your own, or "
    "'assistant model import PATH' for a Hugging Face checkpoint; then start again with --model PATH."
)
Approver = Callable[[ev.ApprovalRequest], ev.ApprovalDecision]
_TOOL_CALL = "<|tool_call|>"


@dataclass
class _Turn:
    """What one turn did: the loop's scratch state and what is persisted for rating and undo."""

    id: str
    seq: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None


class _Stop(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason, self.text = reason, text


class _DeltaFilter:
    """Forwards a reply's prose as it streams and holds back everything from ``<|tool_call|>`` on."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit, self.buffer, self.stopped = emit, "", False

    def __call__(self, text: str) -> None:
        if self.stopped:
            return
        self.buffer += text
        index = self.buffer.find(_TOOL_CALL)
        if index != -1:
            if index:
                self.emit(self.buffer[:index])
            self.buffer, self.stopped = "", True
            return
        keep = next((n for n in range(min(len(_TOOL_CALL) - 1, len(self.buffer)), 0, -1)
                     if _TOOL_CALL.startswith(self.buffer[-n:])), 0)
        out, self.buffer = self.buffer[: len(self.buffer) - keep], self.buffer[len(self.buffer) - keep :]
        if out:
            self.emit(out)

    def flush(self) -> None:
        if self.buffer and not self.stopped:
            self.emit(self.buffer)
        self.buffer = ""


def reject_all(request: ev.ApprovalRequest) -> ev.ApprovalDecision:
    """The approver used when none is given: nothing that asks is ever run."""
    return ev.ApprovalDecision("reject")


def approve_all(request: ev.ApprovalRequest) -> ev.ApprovalDecision:
    """Run everything that asks, once each (``assistant agent --yes``; evaluations in a sandbox)."""
    return ev.ApprovalDecision("once")


class AgentSession:
    """One conversation with the agent in ``project`` (see the module docstring and docs/AGENT.md)."""

    def __init__(self, project: Path, *, model: Any, sandbox_factory: Callable[[], Any] | None, index: Any,
                 settings: AgentSettings | None = None, approver: Approver | None = None, store: Any = None,
                 feedback: Any = None, session_id: str | None = None) -> None:
        from sandbox.tools import ToolContext

        self.project = Path(project).resolve()
        if not self.project.is_dir():
            raise AgentError(f"project directory {project} does not exist")
        self.model = as_reply_source(model)
        self.settings = settings or AgentSettings()
        self.approver = approver or reject_all
        self.store = store
        self.feedback = feedback
        self.sandbox_factory = sandbox_factory
        self.memory = Memory(self.project)
        from assistant.agent.tools import remember_tool

        self.agent_tools = {"remember": remember_tool(self.memory)}
        self.context = None
        self._index = None
        self.shadow = ShadowGit(self.project)
        self.ctx = ToolContext(project=self.project, sandbox_factory=sandbox_factory, approve=self._approve_write)
        self.turns: list[_Turn] = []
        self._pending_write: dict[str, Any] | None = None
        self._current: _Turn | None = None
        self._emit: Callable[[Any], None] = lambda event: None
        self._lock = threading.Lock()
        if self.model is not None:
            self.context = ContextBuilder(self.project, self.settings, self.model.count, self.model.context_window,
                                          index, getattr(self.model, "render_count", None))
        self.index = index
        self.model_id = getattr(self.model, "name", "") if self.model is not None else ""
        if session_id is not None:
            if store is None:
                raise AgentError("resuming a session needs the sessions store")
            store.get(session_id)
            self.id = session_id
            self.turns = [_Turn(t.id, t.seq, t.messages, t.record, t.stop_reason) for t in store.turns(session_id)]
        else:
            self.id = store.create(self.project, self.model_id) if store is not None else uuid.uuid4().hex[:12]

    # ---- public API ----------------------------------------------------------------------------

    @property
    def index(self):
        """The codebase index (or None). Setting it, e.g. once ``/index`` built one, takes effect from
        the next step: retrieval into the prompt and the ``search_codebase`` tool."""
        return self._index

    @index.setter
    def index(self, index) -> None:
        from assistant.agent.tools import search_codebase_tool

        self._index = index
        if self.context is not None:
            self.context.index = index
        if index is None:
            self.agent_tools.pop("search_codebase", None)
        else:
            self.agent_tools["search_codebase"] = search_codebase_tool(index)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every message of the conversation so far (resumed turns included)."""
        return [m for t in self.turns for m in t.messages]

    def _tool(self, name: str):
        from sandbox.tools import get_tool

        return self.agent_tools.get(name) or get_tool(name)

    def policy(self, tool: str) -> str:
        """allow | ask | deny for ``tool`` (settings first, then its kind's default)."""
        if tool in self.settings.policies:
            return self.settings.policies[tool]
        spec = self._tool(tool)
        return default_policy(spec.kind.value if spec else "execute")

    def allowed_tools(self, plan: bool = False) -> list[dict[str, Any]]:
        """The schemas the model is shown: not denied, execution only with a sandbox, read-only in plan mode."""
        from sandbox.tools import TOOLS

        out = []
        for tool in [*TOOLS.values(), *self.agent_tools.values()]:
            if self.policy(tool.name) == "deny":
                continue
            if tool.kind.value == "execute" and self.sandbox_factory is None:
                continue
            if plan and tool.kind.value != "read":
                continue
            out.append(tool.schema())
        return out

    def new_conversation(self) -> str:
        """Start over (``/clear``): an empty conversation under a new session id; returns the id."""
        with self._lock:
            self.turns = []
            self.id = self.store.create(self.project, self.model_id) if self.store is not None else uuid.uuid4().hex[:12]
            return self.id

    def remember(self, fact: str) -> list[str]:
        """Add a fact the user confirmed to the project's episodic memory."""
        return self.memory.add(fact)

    def run_turn(self, text: str, *, on_event: Callable[[Any], None] | None = None,
                 cancel: threading.Event | None = None, plan: bool = False) -> ev.TurnFinished:
        """Run one user message to its end (see the module docstring). Never raises for model output."""
        emit = on_event or (lambda event: None)
        cancel = cancel or threading.Event()
        with self._lock:
            turn = _Turn(id=uuid.uuid4().hex[:12], seq=len(self.turns))
            turn.messages.append({"role": "user", "content": text})
            turn.record = {"started": time.time(), "model": self.model_id, "tool_calls": [], "prompt": [],
                           "response": "", "changed_files": [], "plan": plan}
            self.turns.append(turn)
            self._current = turn
            self._emit = emit
            self._persist(turn)
            emit(ev.TurnStarted(turn.id, text, plan))
            stats = {"tokens": 0, "tokens_per_s": 0.0, "steps": 0}
            try:
                if self.model is None:
                    emit(ev.Notice(NO_MODEL, "error"))
                    raise _Stop("error", NO_MODEL)
                self._notices(emit)
                self.context.begin_turn(text, self.memory.facts())
                for notice in self.context.notices:
                    emit(ev.Notice(notice, "warning"))
                self.context.notices.clear()
                deadline = time.monotonic() + self.settings.max_seconds
                if plan:
                    answer = self._run_plan(turn, emit, cancel, deadline, stats)
                else:
                    answer = self._loop(turn, emit, cancel, deadline, stats, plan=False)
                reason, final = "answer", answer
            except _Stop as stop:
                reason, final = stop.reason, stop.text
                if reason != "answer" and final and not (turn.messages and turn.messages[-1].get("role") == "assistant"
                                                         and not turn.messages[-1].get("tool_call")):
                    turn.messages.append({"role": "assistant", "content": final, "train": False})
            except Exception as exc:  # a bug must end the turn visibly, never kill the caller's thread
                reason, final = "error", f"The turn failed: {type(exc).__name__}: {exc}"
                emit(ev.Notice(final, "error"))
            finally:
                self._current = None
            changed = self._checkpoint_after(turn, emit)
            turn.stop_reason = reason
            turn.record.update(finished=time.time(), stop_reason=reason, final=final)
            self._persist(turn)
            finished = ev.TurnFinished(turn.id, final, reason, stats["tokens"], stats["tokens_per_s"], changed,
                                       stats["steps"])
            emit(finished)
            return finished

    def undo_last_turn(self, force: bool = False) -> list[str]:
        """Restore the files the newest not-yet-undone turn changed; returns their paths.

        The model is told in the conversation which files were put back. Refused while a turn runs."""
        if not self._lock.acquire(blocking=False):
            raise AgentError("a turn is running", "wait for it to finish or cancel it, then undo")
        try:
            for turn in reversed(self.turns):
                record = turn.record
                if record.get("shadow_before") and record.get("changed_files") and not record.get("undone"):
                    restored = self.shadow.restore(record["shadow_before"], record["shadow_after"], force=force)
                    record["undone"] = True
                    turn.messages.append({"role": "user", "content": "(The user undid this turn: the changes to "
                                          f"{', '.join(restored)} were reverted.)"})
                    self._persist(turn)
                    self._signal("undone_turn", turn, reason=f"undid changes to {', '.join(restored)}")
                    return restored
            raise AgentError("nothing to undo", "no turn of this session changed files")
        finally:
            self._lock.release()

    def rate(self, turn_id: str, value: int, reason: str | None = None) -> int | None:
        """Thumbs up (+1) or down (-1) on a turn, with its full context; returns the feedback id."""
        if value not in (1, -1):
            raise AgentError(f"a rating is +1 or -1, not {value!r}")
        turn = next((t for t in self.turns if t.id == turn_id), None)
        if turn is None:
            raise AgentError(f"no turn '{turn_id}' in this session")
        return self._signal("rating", turn, value=value, reason=reason)

    def close(self) -> None:
        sandbox = self.ctx.sandbox
        self.ctx.sandbox = None
        if sandbox is not None:
            try:
                sandbox.close()
            except Exception:  # closing must never raise at exit
                pass

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the loop ------------------------------------------------------------------------------

    def _notices(self, emit) -> None:
        if self.sandbox_factory is None:
            emit(ev.Notice("no sandbox: code execution tools are unavailable this session", "warning"))
        if self.index is None:
            emit(ev.Notice("no codebase index: run 'assistant index .' for code retrieval", "info"))

    def _older_turns(self, turn: _Turn) -> list[list[dict[str, Any]]]:
        return [t.messages for t in self.turns if t is not turn]

    def _changed_so_far(self) -> list[str]:
        return sorted({p for t in self.turns for p in t.record.get("changed_files", [])})

    def _generate(self, turn: _Turn, current: list[dict[str, Any]], tools, emit, cancel, stats, plan) -> Generated:
        assembled = self.context.assemble(self._older_turns(turn), current, tools, plan, self._changed_so_far())
        if assembled.compacted_turns and not turn.record.get("compacted"):
            turn.record["compacted"] = assembled.compacted_turns
            emit(ev.Notice(f"context: {assembled.compacted_turns} older turn(s) compacted into a summary", "info"))
        if assembled.dropped and not turn.record.get("dropped"):
            turn.record["dropped"] = assembled.dropped
            emit(ev.Notice(f"context: left out to fit the model's window: {', '.join(assembled.dropped)}", "warning"))
        deltas = _DeltaFilter(lambda text: emit(ev.TextDelta(text)))
        s = self.settings
        generated = self.model.generate(assembled.messages, assembled.tools, deltas, cancel, max_new_tokens=s.max_new_tokens,
                                        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed,
                                        copy_bias=s.copy_bias, answer_copy_bias=s.answer_copy_bias)
        deltas.flush()
        stats["tokens"] += generated.tokens
        stats["tokens_per_s"] = generated.tokens_per_s
        stats["steps"] += 1
        turn.record["prompt"] = assembled.messages
        turn.record["tools"] = [t["name"] for t in tools]
        turn.record["response"] = generated.text
        return generated

    def _loop(self, turn: _Turn, emit, cancel: threading.Event, deadline: float, stats: dict, plan: bool,
              messages: list[dict[str, Any]] | None = None) -> str:
        """Model ↔ tools until a final answer; returns it (or raises ``_Stop``)."""
        from trainer.data.chat_format import FinalAnswer, ToolCallError, parse_reply

        messages = turn.messages if messages is None else messages
        tools = self.allowed_tools(plan)
        retried = False
        failed: set[tuple[str, str]] = set()  # (tool, arguments) of the calls that failed this turn
        for _ in range(self.settings.max_steps):
            if cancel.is_set():
                raise _Stop("cancelled", "Cancelled.")
            if time.monotonic() > deadline:
                raise _Stop("max_time", f"Stopped: the turn ran past its {self.settings.max_seconds:g} s limit.")
            generated = self._generate(turn, messages, tools, emit, cancel, stats, plan)
            if cancel.is_set() or generated.stop_reason == "cancelled":
                if generated.text.strip():
                    messages.append({"role": "assistant", "content": generated.text, "train": False})
                raise _Stop("cancelled", "Cancelled.")
            reply = parse_reply(generated.text, tools, complete=generated.complete)
            if isinstance(reply, FinalAnswer):
                messages.append({"role": "assistant", "content": reply.content})
                return reply.content
            unavailable = self._unavailable(reply, plan)
            if unavailable is not None:  # a real tool the user denied (or plan mode / no sandbox hides)
                name, arguments, why = unavailable
                signature = (name, json.dumps(arguments, sort_keys=True))
                self._refuse(turn, name, arguments, why, messages, emit)
                if signature in failed:
                    raise _Stop("repeated_failure", f"Stopped: the model called {name} twice, which is not available: {why}.")
                failed.add(signature)
                continue
            if isinstance(reply, ToolCallError):
                messages.append({"role": "assistant", "content": generated.text, "train": False})
                if retried:
                    raise _Stop("error", f"Stopped: the model wrote a malformed tool call twice ({reply.message}).")
                retried = True
                messages.append(reply.feedback())
                emit(ev.Notice(f"malformed tool call ({reply.kind}): {reply.message}; asking the model to retry", "warning"))
                continue
            retried = False
            ok = self._call(turn, reply, messages, emit)
            signature = (reply.name, json.dumps(reply.arguments, sort_keys=True))
            if not ok:
                if signature in failed:
                    raise _Stop("repeated_failure",
                                f"Stopped: the same call to {reply.name} failed twice with the same arguments: "
                                f"{turn.record['tool_calls'][-1].get('error') or 'see the result above'}.")
                failed.add(signature)
        raise _Stop("max_steps", f"Stopped after {self.settings.max_steps} steps without a final answer.")

    def _unavailable(self, reply, plan: bool) -> tuple[str, dict, str] | None:
        """(name, arguments, why) when ``reply`` calls a known tool this turn does not offer."""
        from trainer.data.chat_format import ToolCallError

        if not isinstance(reply, ToolCallError) or reply.kind != "unknown_tool":
            return None
        try:
            call = json.loads(reply.raw)
        except ValueError:
            return None
        name = call.get("name") if isinstance(call, dict) else None
        tool = self._tool(name) if isinstance(name, str) else None
        if tool is None:
            return None
        arguments = call.get("arguments") if isinstance(call.get("arguments"), dict) else {}
        if self.policy(name) == "deny":
            why = f"{name} is denied by the project's settings ([approvals] {name} = \"deny\")"
        elif plan and tool.kind.value != "read":
            why = f"{name} changes things, and plan mode allows read-only tools until the plan is approved"
        elif tool.kind.value == "execute" and self.sandbox_factory is None:
            why = f"{name} needs the sandbox, and there is none in this session"
        else:
            return None
        return name, arguments, why

    def _refuse(self, turn: _Turn, name: str, arguments: dict, why: str, messages: list[dict[str, Any]], emit) -> None:
        """Show a denied call as such and tell the model it cannot use that tool."""
        call_id = uuid.uuid4().hex[:8]
        messages.append({"role": "assistant", "content": "", "tool_call": {"name": name, "arguments": arguments},
                         "train": False})
        output = json.dumps({"tool": name, "ok": False, "error": f"not available: {why}",
                             "hint": "use one of the listed tools or answer without it"}, ensure_ascii=False)
        messages.append({"role": "tool", "content": output})
        emit(ev.ToolCallStarted(call_id, name, dict(arguments)))
        turn.record["tool_calls"].append({"call_id": call_id, "name": name, "arguments": arguments, "ok": False,
                                          "status": "denied", "output": output, "truncated": False, "error": why})
        emit(ev.ToolCallFinished(call_id, name, False, output, False, 0.0, "denied"))

    def _call(self, turn: _Turn, call, messages: list[dict[str, Any]], emit) -> bool:
        """Approve and run one tool call; append the call and its result to ``messages``. Returns ok."""
        from sandbox.tools import call_tool

        call_id = uuid.uuid4().hex[:8]
        messages.append(call.to_message())
        emit(ev.ToolCallStarted(call_id, call.name, dict(call.arguments)))
        started = time.monotonic()
        kind = self._tool(call.name).kind.value
        policy = self.policy(call.name)
        decision: ev.ApprovalDecision | None = None
        if policy == "ask" and (kind != "write" or call.name in self.agent_tools):  # sandbox writes ask with their diff
            decision = self._ask(ev.ApprovalRequest(call_id, call.name, dict(call.arguments), _summary(call.name, call.arguments)), emit)
            if decision.choice == "reject":
                return self._rejected(turn, call, call_id, decision, messages, emit, started)
        self._pending_write = {"call_id": call_id, "name": call.name, "arguments": dict(call.arguments),
                               "policy": policy, "decision": None}
        try:
            if call.name in self.agent_tools:
                result = self.agent_tools[call.name].run(dict(call.arguments), self.ctx)
            else:
                result = call_tool(call.name, call.arguments, self.ctx)
        finally:
            pending, self._pending_write = self._pending_write, None
        if pending["decision"] is not None and pending["decision"].choice == "reject":
            return self._rejected(turn, call, call_id, pending["decision"], messages, emit, started)
        if not result.ok and kind == "execute" and self.ctx.sandbox is None:  # it could not even start
            emit(ev.Notice(f"sandbox unavailable: {result.error}", "error"))
        output, truncated = truncate_result(result.to_dict(), self.settings.tool_result_tokens, self.model.count)
        messages.append({"role": "tool", "content": output})
        status = "ok" if result.ok else "error"
        duration = time.monotonic() - started
        entry = {"call_id": call_id, "name": call.name, "arguments": call.arguments, "ok": result.ok,
                 "status": status, "output": output, "truncated": truncated, "duration_s": duration}
        if not result.ok:
            entry["error"] = result.error
        turn.record["tool_calls"].append(entry)
        self._persist(turn)  # a crash mid-turn keeps what already ran
        emit(ev.ToolCallFinished(call_id, call.name, result.ok, output, truncated, duration, status))
        if not result.ok:
            self._signal("failed_tool", turn, reason=f"{call.name}: {result.error}")
        return result.ok

    def _ask(self, request: ev.ApprovalRequest, emit) -> ev.ApprovalDecision:
        try:
            decision = self.approver(request)
        except Exception as exc:  # an approver that fails must not run the call
            emit(ev.Notice(f"approval failed ({exc}); the call was not run", "error"))
            return ev.ApprovalDecision("reject")
        if not isinstance(decision, ev.ApprovalDecision) or decision.choice not in ("once", "always", "reject"):
            return ev.ApprovalDecision("reject")
        if decision.choice == "always" and request.tool != "plan":
            from assistant.settings import set_project_setting

            path = set_project_setting(self.project, f"approvals.{request.tool}", "allow")
            self.settings.policies[request.tool] = "allow"
            emit(ev.Notice(f"'{request.tool}' is now always allowed in this project (rule saved in {path})", "info"))
        return decision

    def _approve_write(self, approval) -> bool:
        """``ToolContext.approve`` for write_file/apply_patch: policy, the user's answer with the diff,
        and the shadow checkpoint taken before anything is written."""
        pending = self._pending_write
        if pending is None:
            return False
        if pending["policy"] != "allow":
            decision = self._ask(ev.ApprovalRequest(pending["call_id"], approval.tool, pending["arguments"],
                                                    approval.summary, approval.diff), self._emit_current)
            pending["decision"] = decision
            if decision.choice == "reject":
                return False
        turn = self._current
        if turn is not None:
            written = turn.record.setdefault("written", [])
            if not turn.record.get("shadow_before"):
                turn.record["shadow_before"] = self.shadow.snapshot(f"before turn {turn.id}", approval.paths)
            elif any(p not in written for p in approval.paths):  # files first touched now: their current state
                turn.record["shadow_before"] = self.shadow.include([p for p in approval.paths if p not in written])
            written.extend(p for p in approval.paths if p not in written)
        return True

    def _emit_current(self, event) -> None:
        self._emit(event)

    def _rejected(self, turn, call, call_id, decision, messages, emit, started) -> bool:
        result = {"tool": call.name, "ok": False, "error": "the user rejected this call"}
        if decision.instruction:
            result["instruction"] = decision.instruction
        output = json.dumps(result, ensure_ascii=False)
        messages.append({"role": "tool", "content": output})
        turn.record["tool_calls"].append({"call_id": call_id, "name": call.name, "arguments": call.arguments, "ok": False,
                                          "status": "rejected", "output": output, "truncated": False,
                                          "instruction": decision.instruction})
        emit(ev.ToolCallFinished(call_id, call.name, False, output, False, time.monotonic() - started, "rejected"))
        self._signal("rejected_approval", turn, reason=decision.instruction or f"rejected {call.name}")
        if not decision.instruction:
            raise _Stop("rejected", f"Stopped: you rejected {call.name}.")
        return True  # the model goes on with the user's instruction; not a failure of the call

    def _run_plan(self, turn: _Turn, emit, cancel, deadline, stats) -> str:
        plan_text = self._loop(turn, emit, cancel, deadline, stats, plan=True)
        steps = parse_plan(plan_text)
        if not steps:
            emit(ev.Notice("the model did not write a numbered plan; showing its answer", "warning"))
            return plan_text
        turn.record["plan_steps"] = steps
        emit(ev.PlanProposed(steps))
        decision = self._ask(ev.ApprovalRequest("plan", "plan", {"steps": steps},
                                                f"run this {len(steps)}-step plan"), emit)
        if decision.choice == "reject":
            self._signal("rejected_approval", turn, reason=decision.instruction or "rejected the plan")
            raise _Stop("rejected", "Plan not approved; nothing was changed." +
                        (f" Your note: {decision.instruction}" if decision.instruction else ""))
        results = []
        for index, step in enumerate(steps, 1):
            if cancel.is_set():
                emit(ev.PlanStep(index, len(steps), step, "skipped"))
                raise _Stop("cancelled", f"Cancelled at plan step {index} of {len(steps)}.")
            emit(ev.PlanStep(index, len(steps), step, "running"))
            turn.messages.append({"role": "user", "content": f"Carry out step {index} of {len(steps)} of the plan: {step}"})
            try:
                answer = self._loop(turn, emit, cancel, deadline, stats, plan=False)
            except _Stop:
                emit(ev.PlanStep(index, len(steps), step, "failed"))
                raise
            emit(ev.PlanStep(index, len(steps), step, "done"))
            results.append(f"{index}. {step.rstrip('.')}: {answer}")
        return "Plan done.\n" + "\n".join(results)

    # ---- persistence, undo, feedback -----------------------------------------------------------

    def _checkpoint_after(self, turn: _Turn, emit) -> list[str]:
        before = turn.record.get("shadow_before")
        if not before:
            return []
        try:
            after = self.shadow.snapshot(f"after turn {turn.id}", turn.record.get("written", []))
            changed = self.shadow.changed(before, after)
        except AgentError as exc:
            emit(ev.Notice(f"undo checkpoint failed: {exc}", "warning"))
            return []
        turn.record.update(shadow_after=after, changed_files=changed)
        return changed

    def _persist(self, turn: _Turn) -> None:
        if self.store is None:
            return
        from assistant.agent.store import StoredTurn

        title = turn.messages[0]["content"] if turn.seq == 0 else None
        try:
            self.store.save_turn(self.id, StoredTurn(turn.id, turn.seq, turn.messages, turn.record, turn.stop_reason), title)
        except sqlite3.Error as exc:  # a full disk or a locked file must not end the turn
            self._emit(ev.Notice(f"the session could not be saved: {exc}", "warning"))

    def _signal(self, kind: str, turn: _Turn, value: int = -1, reason: str | None = None) -> int | None:
        """Record feedback (explicit rating or implicit signal) with the turn's full context."""
        if self.feedback is None:
            return None
        record = turn.record
        return self.feedback.add(
            kind=kind, value=value, reason=reason, session_id=self.id, turn_id=turn.id, project=str(self.project),
            model_id=record.get("model") or self.model_id, messages=record.get("prompt") or [],
            response=record.get("final") or record.get("response") or "", tool_calls=record.get("tool_calls") or [],
            extra={"stop_reason": record.get("stop_reason"), "changed_files": record.get("changed_files") or [],
                   "tools": record.get("tools") or [], "started": record.get("started"),
                   "finished": record.get("finished")})


def _summary(name: str, arguments: dict[str, Any]) -> str:
    """One line for the approval prompt."""
    for key in ("command", "code", "path", "pattern", "query", "target", "fact"):
        if isinstance(arguments.get(key), str):
            value = " ".join(arguments[key].split())
            return f"{name}: {value[:100]}{'…' if len(value) > 100 else ''}"
    return f"{name} {json.dumps(arguments, ensure_ascii=False)[:100]}"
