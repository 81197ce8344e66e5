"""The app's controller: the agent session, the model, the index and the sandbox behind one object.

Plain Python (no Textual): the app calls these methods from worker threads and hands in three
callbacks, which it implements by posting messages — ``on_event`` (agent events and index
progress), ``on_status`` (status bar fields) and ``ask`` (an approval: blocks the calling worker
until the user answers). Every slow thing here (loading the model, probing Docker, checking or
updating the index, a turn) runs in a worker; nothing here touches a widget.

Degrading, never crashing: no model, no index, no Docker engine each leave the app open with a
visible explanation (``StartupState.notices``) and the rest working.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.agent import events as ev
from assistant.default_model import ModelChoice, choose_model, how_to_get_a_model

EventFn = Callable[[Any], None]
StatusFn = Callable[..., None]
AskFn = Callable[[ev.ApprovalRequest], ev.ApprovalDecision]
ISOLATION = {"docker": "container", "bwrap": "namespaces", "none": "none"}


@dataclass
class LaunchOptions:
    """What ``assistant`` was started with."""

    project: Path
    model: str | None = None  # --model PATH
    resume: str | None = None  # a session id, "latest", or "list" (pick from the sessions list)
    device: str = "auto"
    watch_index: bool = True  # keep an existing index fresh with the watcher
    settings: dict[str, Any] | None = None  # the merged settings (None: read the settings files)


@dataclass
class IndexProgress:
    """Re-indexing progress (from ``/index`` or the watcher), for the status bar."""

    stage: str  # "scan" | "embed" | "done" | "error"
    done: int = 0
    total: int = 0
    line: str = ""


@dataclass
class StartupState:
    model_label: str = "no model"
    model_help: str | None = None  # Markdown: how to get a model (when there is none)
    device: str = ""
    index_state: str = "none"  # fresh | stale | none | unavailable
    index_line: str = ""
    sandbox_backend: str = "none"
    sandbox_isolation: str = "none"
    sandbox_note: str | None = None
    session_id: str = ""
    history: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # (turn id, its messages), resumed
    notices: list[tuple[str, str]] = field(default_factory=list)  # (text, level)


def sandbox_label(backend: str, isolation: str, problem: str | None = None) -> str:
    """The status bar's sandbox field: where model-run code executes and how isolated it is."""
    if backend == "none":
        return "NO SANDBOX"
    if backend == "unavailable":
        return "sandbox: unavailable"
    if problem:
        return f"sandbox: {backend} · {'image missing' if 'image' in problem else 'unavailable'}"
    return f"sandbox: {backend} ({isolation})"


def model_label(loaded) -> str:
    """``name · architecture · quantization`` for the status bar."""
    quant = loaded.quantization["mode"] if loaded.quantization else str(loaded.dtype).removeprefix("torch.")
    return f"{loaded.path.name} · {loaded.config.architecture} · {quant}"


class _ProgressIndex:
    """The index as the watcher sees it, with every update reporting its progress."""

    def __init__(self, index, progress: Callable[[Any], None]) -> None:
        self._index = index
        self._progress = progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def update(self, paths=None, progress=None):
        return self._index.update(paths=paths, progress=self._progress)


class SessionController:
    def __init__(self, options: LaunchOptions, *, on_event: EventFn, on_status: StatusFn, ask: AskFn) -> None:
        self.options = options
        self.project = Path(options.project).resolve()
        self.on_event = on_event
        self.on_status = on_status
        self.ask = ask
        self.settings: dict[str, Any] = {}
        self.model_choice: ModelChoice | None = None
        self.loaded = None
        self.index = None
        self.watcher = None
        self.sandbox_settings = None
        self.session = None
        self.store = None
        self.feedback = None
        self.cancel = threading.Event()
        self.state = StartupState()
        self._busy = threading.Lock()

    # ---- start-up ------------------------------------------------------------------------------

    def start(self, session_id: str | None = None) -> StartupState:
        """Load what is there (each part may fail alone) and open the agent session."""
        from assistant.settings import load_settings

        state = self.state = StartupState()
        try:
            self.settings = self.options.settings if self.options.settings is not None else load_settings(self.project)
        except Exception as exc:
            self.settings = {}
            state.notices.append((f"settings: {exc}; using the defaults", "error"))
        self._load_model(state)
        self._open_index(state)
        self._probe_sandbox(state)
        self._open_session(state, session_id)
        return state

    def _load_model(self, state: StartupState) -> None:
        self.model_choice = choose_model(self.options.model, self.settings)
        if not self.model_choice.exists:
            state.model_help = how_to_get_a_model(self.model_choice)
            state.model_label = "no model"
            return
        self.on_status(model=f"loading {self.model_choice.path.name}…")
        try:
            from assistant.runtime import load

            self.loaded = load(self.model_choice.path, device=self.options.device)
        except Exception as exc:  # a corrupt or incompatible checkpoint: say so, keep the app open
            state.model_help = (f"**Cannot load the model** at `{self.model_choice.path}`: {exc}\n\n"
                                + how_to_get_a_model(self.model_choice).split("\n", 2)[2])
            state.model_label = "no model (load failed)"
            return
        state.model_label = model_label(self.loaded)
        state.device = str(self.loaded.device)

    def _open_index(self, state: StartupState) -> None:
        from assistant.settings import section
        from index import IndexSettings, open_index

        try:
            index = open_index(self.project, section(self.settings, "index", IndexSettings))
            status = index.status()
        except Exception as exc:
            state.index_state, state.index_line = "unavailable", f"index unavailable: {exc}"
            state.notices.append((f"Codebase index unavailable ({exc}); code search is off this session.", "warning"))
            return
        state.index_state, state.index_line = status.state, status.line()
        if status.state == "none":
            state.notices.append(("No codebase index yet: `/index` builds it (or `assistant index .`); "
                                  "until then the model cannot search your code.", "info"))
            self.index = index  # /index can build it; the agent gets it once it exists
            return
        self.index = index
        if status.state == "stale":
            state.notices.append((f"The codebase index is stale ({status.line()}): `/index` updates it.", "warning"))
        if self.options.watch_index:
            self._start_watcher()

    def _start_watcher(self) -> None:
        if self.watcher is not None or self.index is None:
            return
        from index.watch import IndexWatcher

        def updated(summary) -> None:
            self.on_event(IndexProgress("done", line=summary.line()))
            self._report_index()

        def failed(exc: Exception) -> None:
            self.on_event(IndexProgress("error", line=f"re-indexing failed: {exc}"))

        try:
            self.watcher = IndexWatcher(_ProgressIndex(self.index, self._progress), on_update=updated,
                                        on_error=failed).start()
        except Exception as exc:  # e.g. inotify limits: the index still works, it just is not watched
            self.watcher = None
            self.on_event(ev.Notice(f"index watcher not started ({exc}); run /index after changes", "warning"))

    def _progress(self, progress) -> None:
        self.on_event(IndexProgress(progress.stage, progress.done, progress.total))

    def _report_index(self) -> None:
        try:
            status = self.index.status()
            self.on_status(index=f"index: {status.state}")
        except Exception as exc:
            self.on_status(index=f"index: unavailable ({exc})")

    def _probe_sandbox(self, state: StartupState) -> None:
        from assistant.settings import section
        from sandbox.factory import probe
        from sandbox.limits import SandboxSettings

        try:
            self.sandbox_settings = section(self.settings, "sandbox", SandboxSettings)
            found = probe(self.sandbox_settings)
        except Exception as exc:
            state.sandbox_backend, state.sandbox_isolation = "unavailable", "none"
            state.sandbox_note = f"sandbox unavailable: {exc}"
            state.notices.append((f"Sandbox unavailable ({exc}): code execution tools are off this session.",
                                  "warning"))
            self.sandbox_settings = None
            return
        state.sandbox_backend = found.chosen
        state.sandbox_isolation = ISOLATION.get(found.chosen, "none")
        if found.chosen == "docker":
            problem = self._docker_image_problem()
            if problem:
                state.sandbox_note = problem
                state.notices.append((problem, "warning"))
        elif found.chosen == "bwrap":
            state.notices.append((f"No Docker engine ({found.docker_error}); code runs under bubblewrap "
                                  "(namespaces, no network).", "info"))
        else:
            state.sandbox_note = "no isolation: each code run asks you first"
            state.notices.append(("No sandbox: neither a Docker engine nor bubblewrap works here. Each code run "
                                  "will ask before it runs directly on your machine. `/sandbox` explains.", "warning"))

    def _docker_image_problem(self) -> str | None:
        from sandbox.docker_backend import connect

        try:
            client = connect(self.sandbox_settings, timeout=5)
        except Exception as exc:
            return f"Docker engine not reachable: {exc}"
        try:
            client.api.inspect_image(self.sandbox_settings.image)
            return None
        except Exception:
            return (f"The sandbox image '{self.sandbox_settings.image}' is not on this machine: run "
                    "`assistant sandbox build`; until then code execution fails with that hint.")
        finally:
            client.close()

    def _sandbox_factory(self):
        if self.sandbox_settings is None:
            return None
        settings, project = self.sandbox_settings, self.project

        def confirm_on_host(code: str, language: str) -> bool:
            decision = self.ask(ev.ApprovalRequest("host", f"run {language} WITHOUT a sandbox", {"code": code}
                                                   if language == "python" else {"command": code},
                                                   "no sandbox here: this runs directly on your machine, as you"))
            return decision.choice in ("once", "always")

        def factory():
            from sandbox.factory import open_sandbox

            self.on_status(sandbox=f"sandbox: starting {self.state.sandbox_backend}…")
            try:
                box = open_sandbox(settings, project, confirm=confirm_on_host)
            finally:
                self._report_sandbox()
            info = box.info()
            self.on_status(sandbox=sandbox_label(info.backend, info.isolation))
            return box

        return factory

    def _report_sandbox(self) -> None:
        s = self.state
        self.on_status(sandbox=sandbox_label(s.sandbox_backend, s.sandbox_isolation, s.sandbox_note))

    def _open_session(self, state: StartupState, session_id: str | None) -> None:
        from assistant.agent import AgentSession, SessionStore, agent_settings

        try:
            self.store = SessionStore()
        except Exception as exc:
            self.store = None
            state.notices.append((f"sessions store unavailable ({exc}); this session will not be saved", "warning"))
        try:
            from feedback.store import FeedbackStore

            self.feedback = FeedbackStore()
        except Exception as exc:
            self.feedback = None
            state.notices.append((f"feedback store unavailable ({exc}); ratings will not be saved", "warning"))
        try:
            settings = agent_settings(self.settings)
        except Exception as exc:
            from assistant.agent import AgentSettings

            state.notices.append((f"settings: {exc}; using the agent's defaults", "error"))
            settings = AgentSettings()
        index = self.index if state.index_state in ("fresh", "stale") else None
        self.session = AgentSession(self.project, model=self.loaded, sandbox_factory=self._sandbox_factory(),
                                    index=index, settings=settings, approver=self.ask, store=self.store,
                                    feedback=self.feedback, session_id=session_id)
        state.session_id = self.session.id
        state.history = [(turn.id, list(turn.messages)) for turn in self.session.turns] if session_id else []

    def sessions(self) -> list:
        """This project's saved sessions, newest first."""
        from assistant.agent import SessionStore

        store = self.store or SessionStore()
        return store.list(self.project)

    def latest_session(self) -> str | None:
        from assistant.agent import SessionStore

        store = self.store or SessionStore()
        latest = store.latest(self.project)
        return latest.id if latest else None

    # ---- the conversation ----------------------------------------------------------------------

    def new_turn(self) -> threading.Event:
        """A fresh cancel event for the next turn, made when the user sends (on the event loop), so an
        Esc pressed before the worker even starts is not lost."""
        self.cancel = threading.Event()
        return self.cancel

    def run_turn(self, text: str, cancel: threading.Event, plan: bool = False) -> ev.TurnFinished:
        """One user message to its end; events go to ``on_event``. Runs in a worker thread."""
        with self._busy:
            return self.session.run_turn(text, on_event=self.on_event, cancel=cancel, plan=plan)

    def cancel_turn(self) -> None:
        """Esc: the runtime checks this before every token."""
        self.cancel.set()

    def undo(self) -> list[str]:
        return self.session.undo_last_turn()

    def rate(self, turn_id: str, value: int, reason: str | None) -> int | None:
        return self.session.rate(turn_id, value, reason)

    def new_session(self) -> StartupState:
        """/clear: a fresh conversation with the same model, index and sandbox (the container stays)."""
        if self.session is None:
            self._open_session(self.state, None)
        else:
            self.state.session_id = self.session.new_conversation()
        return self.state

    def resume(self, session_id: str) -> StartupState:
        old = self.session
        if old is not None:
            old.close()
        self._open_session(self.state, session_id)
        return self.state

    def switch_model(self, path: str) -> StartupState:
        """/model PATH: load another checkpoint and continue in a new session (on failure nothing changes)."""
        from assistant.runtime import load

        choice = ModelChoice(Path(path).expanduser(), "--model")
        if not choice.exists:
            raise FileNotFoundError(f"no checkpoint at {choice.path}")
        loaded = load(choice.path, device=self.options.device)  # a bad file raises; the old model stays
        old = self.session
        self.loaded, self.model_choice, self.options.model = loaded, choice, str(choice.path)
        self.state.model_label, self.state.device, self.state.model_help = model_label(loaded), str(loaded.device), None
        if old is not None:
            old.close()
        self._open_session(self.state, None)
        return self.state

    def model_info(self) -> str:
        """Markdown describing the loaded model (for /model)."""
        if self.loaded is None:
            return self.state.model_help or "No model loaded."
        loaded = self.loaded
        c = loaded.config
        rows = [("file", str(loaded.path)), ("chosen by", self.model_choice.source if self.model_choice else "?"),
                ("architecture", c.architecture), ("shape", f"d_model {c.d_model}, {c.n_layers} layers"),
                ("context", f"{loaded.context_window} tokens"),
                ("weights", loaded.quantization["mode"] if loaded.quantization else str(loaded.dtype)),
                ("device", str(loaded.device)),
                ("trained", f"stage {loaded.metadata.get('stage')}, step {loaded.metadata.get('step')}")]
        table = "\n".join(f"| {k} | `{v}` |" for k, v in rows)
        return f"### Model\n\n| | |\n|---|---|\n{table}\n\n`/model PATH` switches to another checkpoint."

    # ---- index, search, sandbox ----------------------------------------------------------------

    def reindex(self):
        """/index: an incremental update with progress; starts the watcher and hands the index to the agent."""
        from assistant.settings import section
        from index import IndexSettings, open_index

        if self.index is None:
            self.index = open_index(self.project, section(self.settings, "index", IndexSettings))
        summary = self.index.update(progress=self._progress)
        self.on_event(IndexProgress("done", line=summary.line()))
        self._report_index()
        self.state.index_state = "fresh"
        if self.session is not None:
            self.session.index = self.index  # retrieval and search_codebase from the next step on
        if self.options.watch_index:
            self._start_watcher()
        return summary

    def search(self, query: str, k: int = 8) -> str:
        """/search: Markdown of the best hits."""
        if self.index is None or self.state.index_state not in ("fresh", "stale"):
            return "No codebase index yet: run `/index` first."
        hits = self.index.search(query, k=k)
        if not hits:
            return f"No results for `{query}`."
        parts = [f"### Search: `{query}`"]
        for hit in hits:
            parts.append(f"**{hit.location}** {hit.symbol or ''}\n\n```{hit.language or ''}\n"
                         f"{(hit.snippet or '').rstrip()}\n```")
        return "\n\n".join(parts)

    def sandbox_report(self) -> str:
        """/sandbox: Markdown with the backend, isolation, limits and any warning."""
        from sandbox.factory import open_sandbox

        if self.sandbox_settings is None:
            return self.state.sandbox_note or "No sandbox this session."
        box = self.session.ctx.sandbox if self.session is not None else None
        try:
            info = box.info() if box is not None else open_sandbox(self.sandbox_settings, self.project,
                                                                   start=False).info()
        except Exception as exc:
            return f"Sandbox unavailable: {exc}"
        lines = [f"### Sandbox: {info.label}", "", f"- backend: `{info.backend}`, isolation: `{info.isolation}`"]
        if info.image:
            lines.append(f"- image: `{info.image}`")
        lines += [f"- {detail}" for detail in info.details]
        lines.append("- limits: " + ", ".join(f"{k} {v}" for k, v in info.limits.items()))
        lines.append(f"- started: {'yes' if box is not None else 'no (on the first code run)'}")
        if info.warning or self.state.sandbox_note:
            lines += ["", f"**{info.warning or self.state.sandbox_note}**"]
        return "\n".join(lines)

    def queue_retrain(self, note: str = "") -> Path:
        from assistant.retrain_queue import request_retrain

        model = self.loaded.path if self.loaded is not None else None
        return request_retrain(self.project, model, self.session.id if self.session else None, "tui", note)

    def close(self, timeout: float = 30.0) -> None:
        """End the session: cancel a running turn and wait (up to ``timeout``) for it to stop before
        closing the databases it writes to; stop the watcher; remove the sandbox."""
        self.cancel.set()
        idle = self._busy.acquire(timeout=timeout)
        if self.watcher is not None:
            try:
                self.watcher.stop(timeout=5)
            except Exception:
                pass
            self.watcher = None
        if self.session is not None:
            self.session.close()
        if not idle:  # a turn is still running: leave its connections to the process exit
            return
        self._busy.release()
        for store in (self.store, self.feedback):
            close = getattr(store, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass


def project_from_cwd() -> Path:
    return Path(os.getcwd()).resolve()
