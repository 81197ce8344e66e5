"""Context assembly: what the model sees each step, within a token budget counted by its tokenizer.

The system message is built from sections, each cut to its own budget:
  the instructions (built-in or ``[agent] system_prompt``), plan-mode rules when planning,
  ``AGENTS.md`` (project instructions), the episodic memory, a compact repo summary,
  code retrieved from the index for the user's message (only hits that share a word with it),
  and a summary of older turns when the conversation had to be compacted.
The tool schemas (allowed tools only) are appended by the chat format. The conversation follows;
when the whole no longer fits, the oldest turns are folded into the summary (keeping the files
they touched and the next steps they named) until it does. The runtime's ``fit_conversation``
remains the last safety net for a single turn too long to fit.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.agent.settings import AgentSettings

SYSTEM_PROMPT = (
    "You are a coding assistant working in the user's project. Use the tools to inspect and run code "
    "before answering; call one tool at a time and wait for its result. Code runs in an isolated sandbox "
    "with the project read-only at /workspace; change files only with write_file or apply_patch. "
    "When done, answer briefly and say what you changed."
)
PLAN_PROMPT = (
    "Plan mode: you may only use read-only tools. Investigate, then reply with a numbered plan "
    "(1. ..., 2. ...), one concrete step per line, and nothing else. Do not change anything yet."
)
INSTRUCTION_FILES = ("AGENTS.md",)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_NEXT = re.compile(r"\b(next|todo|then|remaining|still|should)\b", re.IGNORECASE)


def cut_to_tokens(text: str, budget: int, count: Callable[[str], int], marker: str = "\n… (truncated)") -> str:
    """The longest prefix of ``text`` (plus ``marker``) within ``budget`` tokens."""
    if budget <= 0 or not text:
        return ""
    if count(text) <= budget:
        return text
    low, high = 0, len(text)
    while low < high:  # binary search on characters: O(log n) tokenizer calls
        mid = (low + high + 1) // 2
        if count(text[:mid] + marker) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low] + marker if low else ""


def truncate_result(result: dict[str, Any], budget: int, count: Callable[[str], int]) -> tuple[str, bool]:
    """A tool result as compact JSON within ``budget`` tokens: the longest strings are cut in their
    middle (head and tail kept, with a marker saying how much went), so the JSON stays valid."""
    data = json.loads(json.dumps(result, ensure_ascii=False, default=str))

    def dump() -> str:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    text = dump()
    if count(text) <= budget:
        return text, False
    for _ in range(20):
        holder, key, value = _longest_string(data)
        if holder is None or len(value) < 40:
            break
        low, high = 0, len(value) // 2  # keep ``low`` characters at each end: the most that fits
        while low < high:
            mid = (low + high + 1) // 2
            holder[key] = _middle_cut(value, mid)
            if count(dump()) <= budget:
                low = mid
            else:
                high = mid - 1
        holder[key] = _middle_cut(value, low)
        text = dump()
        if count(text) <= budget:
            return text, True
    return cut_to_tokens(text, budget, count, marker="…[truncated]"), True


def _middle_cut(value: str, keep: int) -> str:
    return value[:keep] + f"\n…[{len(value) - 2 * keep} chars truncated]…\n" + (value[-keep:] if keep else "")


def _longest_string(node: Any, best=(None, None, "")):
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, str):
            if len(value) > len(best[2]):
                best = (node, key, value)
        elif isinstance(value, (dict, list)):
            best = _longest_string(value, best)
    return best


def repo_summary(project: Path, max_entries: int = 40) -> str:
    """A compact picture of the project: top-level entries, file counts by extension, README's first
    line, and a code map (Python modules with their top-level functions and classes)."""
    from sandbox.tools.paths import walk_files

    counts: Counter[str] = Counter()
    top: dict[str, int] = {}
    python: list[Path] = []
    total = 0
    for path in walk_files(project, project):
        rel = path.relative_to(project)
        if rel.parts[0] == ".assistant":
            continue
        total += 1
        if path.suffix == ".py" and len(python) < 2000:
            python.append(rel)
        counts[path.suffix or path.name] += 1
        head = rel.parts[0] + ("/" if len(rel.parts) > 1 else "")
        top[head] = top.get(head, 0) + 1
        if total >= 20000:
            break
    if not total:
        return "The project is empty."
    entries = sorted(top.items(), key=lambda kv: (not kv[0].endswith("/"), kv[0]))[:max_entries]
    listing = ", ".join(f"{name} ({n} files)" if name.endswith("/") else name for name, n in entries)
    kinds = ", ".join(f"{ext} {n}" for ext, n in counts.most_common(8))
    lines = [f"{total} files. Top level: {listing}.", f"By type: {kinds}."]
    for readme in ("README.md", "README.rst", "README.txt", "README"):
        path = project / readme
        if path.is_file():
            first = next((line.strip("# ").strip() for line in path.read_text(errors="replace").splitlines()
                          if line.strip()), "")
            if first:
                lines.append(f"README: {first[:160]}")
            break
    mapped = code_map(project, python)
    if mapped:
        lines.append(f"Code: {mapped}")
    return "\n".join(lines)


def code_map(project: Path, files: Sequence[Path], max_files: int = 10, max_names: int = 6, max_chars: int = 600) -> str:
    """``pkg/mod.py (f, g, Class); ...``: the project's own modules first (not tests, vendored or
    ``__init__`` files), then tests, then the rest, each with its top-level definitions, so the model
    can name the module that defines a function without searching. Bounded in files, names and length."""
    import ast

    def rank(rel: Path) -> tuple:
        parts = [part.lower() for part in rel.parts]
        testy = any(part.startswith("test") or part == "tests" for part in parts)
        foreign = any(part in ("vendor", "third_party", "site-packages", "build", "dist", "docs", "examples") for part in parts)
        return (foreign, testy, rel.name == "__init__.py", len(parts), str(rel))

    entries: list[str] = []
    length = 0
    for rel in sorted(files, key=rank)[: max_files * 2]:
        path = project / rel
        try:
            if path.stat().st_size > 200_000:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, SyntaxError, ValueError):
            continue
        names = [node.name for node in tree.body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")]
        if not names:
            continue
        more = f", +{len(names) - max_names}" if len(names) > max_names else ""
        entry = f"{rel.as_posix()} ({', '.join(names[:max_names])}{more})"
        if length + len(entry) > max_chars or len(entries) >= max_files:
            break
        entries.append(entry)
        length += len(entry) + 2
    return "; ".join(entries)


def summarize_turns(turns: Sequence[Sequence[Mapping[str, Any]]], changed: Sequence[str] = ()) -> str:
    """An extractive summary of older turns: requests, tools used, answers, files touched, next steps."""
    files: list[str] = list(changed)
    lines: list[str] = []
    next_steps: list[str] = []
    for messages in turns:
        request = answer = ""
        tools: list[str] = []
        for message in messages:
            content = message.get("content") if isinstance(message.get("content"), str) else ""
            if message.get("role") == "user" and not request:
                request = " ".join(content.split())[:140]
            elif message.get("role") == "assistant":
                call = message.get("tool_call")
                if call:
                    args = call.get("arguments") or {}
                    target = args.get("path") or args.get("command") or args.get("code") or ""
                    tools.append(f"{call['name']}({' '.join(str(target).split())[:50]})" if target else call["name"])
                    for key in ("path", "paths"):
                        value = args.get(key)
                        for item in (value if isinstance(value, list) else [value] if value else []):
                            if isinstance(item, str) and item not in files:
                                files.append(item)
                elif content:
                    answer = " ".join(content.split())
                    steps = [line.strip() for line in content.splitlines() if _NEXT.search(line)
                             or re.match(r"\s*\d+[.)]\s", line)]
                    if steps:
                        next_steps = steps[:5]
        part = f"- asked: {request}"
        if tools:
            part += f"; tools: {', '.join(tools[:6])}"
        if answer:
            part += f"; answered: {answer[:160]}"
        lines.append(part)
    out = []
    if files:
        out.append("Files touched: " + ", ".join(files[:30]))
    if next_steps:
        out.append("Next steps: " + " | ".join(next_steps))
    out.append("Earlier turns:\n" + "\n".join(lines))
    return "\n".join(out)


@dataclass
class Assembled:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    compacted_turns: int = 0
    sections: dict[str, int] = field(default_factory=dict)  # tokens per system-prompt section
    tokens: int = 0
    dropped: list[str] = field(default_factory=list)  # sections left out to fit


class ContextBuilder:
    """Builds each step's prompt for one session (project files are read once per turn)."""

    def __init__(self, project: Path, settings: AgentSettings, count: Callable[[str], int], window: int,
                 index: Any = None, render_count: Callable[..., int] | None = None) -> None:
        self.project = project
        self.settings = settings
        self.count = count
        self.window = window
        self.index = index
        self.render_count = render_count
        self._static: dict[str, str] | None = None
        self._sizes: dict[str, int] = {}
        self._empty: int | None = None
        self.notices: list[str] = []

    @property
    def budget(self) -> int:
        if self.settings.context_tokens:
            return self.settings.context_tokens
        return max(self.window - self.settings.max_new_tokens, self.window // 2, 1)

    def begin_turn(self, query: str, memory_facts: Sequence[str]) -> None:
        """Read the per-turn sections: AGENTS.md, memory, repo summary, retrieved code for ``query``."""
        s = self.settings
        static: dict[str, str] = {}
        for name in INSTRUCTION_FILES:
            path = self.project / name
            if path.is_file():
                try:
                    text = path.read_text(encoding="utf-8", errors="replace").strip()
                except OSError:
                    text = ""
                if text:
                    static["instructions"] = "Project instructions (AGENTS.md):\n" + cut_to_tokens(text, s.instructions_tokens, self.count)
        if memory_facts:
            facts = "\n".join(f"- {f}" for f in memory_facts)
            static["memory"] = "Facts the user confirmed about this project:\n" + cut_to_tokens(facts, s.memory_tokens, self.count)
        if s.summary_tokens:
            static["repo"] = "Repository summary:\n" + cut_to_tokens(repo_summary(self.project), s.summary_tokens, self.count)
        retrieved = self._retrieve(query)
        if retrieved:
            static["retrieved"] = retrieved
        self._static = static

    def _retrieve(self, query: str) -> str:
        s = self.settings
        if self.index is None or not s.retrieval_tokens or not query.strip():
            return ""
        words = {w.lower() for w in _WORD.findall(query)}
        if not words:
            return ""
        try:
            if self.index.status().state == "none":
                return ""
            hits = self.index.search(query, k=max(s.retrieval_hits * 2, 4))
        except Exception as exc:  # a broken index degrades retrieval, never the turn
            self.notices.append(f"code retrieval unavailable: {exc}")
            return ""
        blocks = []
        for hit in hits:
            text = f"{hit.path} {hit.symbol} {hit.snippet}".lower()
            if not any(w in text for w in words):  # "when relevant": shares a word with the request
                continue
            blocks.append(f"{hit.location} {hit.symbol}\n{hit.snippet}")
            if len(blocks) >= s.retrieval_hits:
                break
        if not blocks:
            return ""
        return "Code from the project that may be relevant:\n" + cut_to_tokens("\n\n".join(blocks), s.retrieval_tokens, self.count)

    def system_text(self, plan: bool, history_summary: str = "") -> tuple[str, dict[str, int]]:
        parts = {"system": self.settings.system_prompt or SYSTEM_PROMPT}
        if plan:
            parts["plan"] = PLAN_PROMPT
        parts.update(self._static or {})
        if history_summary:
            parts["history"] = "Summary of the conversation so far:\n" + cut_to_tokens(
                history_summary, self.settings.history_summary_tokens, self.count)
        return "\n\n".join(parts.values()), {k: self.count(v) for k, v in parts.items()}

    def _render_size(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
        if self.render_count is not None:
            return self.render_count(messages, tools)
        from trainer.data.chat_format import render_text

        return self.count(render_text(messages, tools, add_generation_prompt=True))

    def _size(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
        """Tokens of the rendered prompt. The chat format encodes each message on its own, so the
        total is the system message's (with the tools) plus each other message's, counted once and
        cached: a long session costs one tokenization per new message, not one per step."""
        head = self._render_size(messages[:1], tools)
        return head + sum(self._message_size(m) for m in messages[1:])

    def _message_size(self, message: dict[str, Any]) -> int:
        key = json.dumps(message, sort_keys=True, ensure_ascii=False)
        size = self._sizes.get(key)
        if size is None:
            if self._empty is None:
                self._empty = self._render_size([], [])  # BOS + the generation prompt
            size = self._sizes[key] = self._render_size([message], []) - self._empty
            if len(self._sizes) > 4096:
                self._sizes.clear()
        return size

    def assemble(self, older_turns: Sequence[Sequence[dict[str, Any]]], current: Sequence[dict[str, Any]],
                 tools: list[dict[str, Any]], plan: bool = False, changed_files: Sequence[str] = ()) -> Assembled:
        """The prompt: system message, then as many of the newest older turns as fit, then ``current``.

        When even the newest turn does not fit, the optional sections go (retrieved code, repo
        summary, memory, project instructions, in that order), then the tool schemas lose their
        parameter descriptions; the runtime cuts whatever still overflows."""
        older = [list(t) for t in older_turns]
        static = dict(self._static or {})
        shrink = ["retrieved", "repo", "memory", "instructions", "schemas"]
        folded = 0
        dropped: list[str] = []
        try:
            while True:
                summary = summarize_turns(older[:folded], changed_files) if folded else ""
                system, sections = self.system_text(plan, summary)
                kept = [m for turn in older[folded:] for m in turn]
                messages = [{"role": "system", "content": system}, *kept, *current]
                size = self._size(messages, tools)
                if size <= self.budget:
                    break
                if folded < len(older):
                    folded += 1
                    continue
                if not shrink:
                    break
                step = shrink.pop(0)
                dropped.append(step)
                if step == "schemas":
                    tools = [compact_schema(t) for t in tools]
                elif self._static:
                    self._static.pop(step, None)
        finally:
            self._static = static
        return Assembled(messages, tools, folded, sections, size, dropped)


def compact_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool schema without its parameters' descriptions (the first sentence of its own kept)."""
    params = json.loads(json.dumps(tool.get("parameters", {})))
    for spec in (params.get("properties") or {}).values():
        if isinstance(spec, dict):
            spec.pop("description", None)
    description = tool.get("description", "").split(". ")[0].rstrip(".") + "."
    return {"name": tool["name"], "description": description, "parameters": params}
