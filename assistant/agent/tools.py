"""Tools the agent adds to the sandbox's: ``search_codebase`` (the codebase index).

``sandbox/`` never imports ``index/``, so the index's tool lives here, shaped like the sandbox
tools (a ``Tool`` with its JSON schema, a read-only kind, a function returning a ``ToolResult``).
It is offered only when the session has an index.
"""

from __future__ import annotations

from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure

PARAMETERS = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "description": "What to look for: words, a symbol, a behaviour."},
        "k": {"type": "integer", "minimum": 1, "maximum": 20, "description": "How many results (default 5)."},
        "path_glob": {"type": "string", "description": "Only files matching this glob, e.g. 'src/**'."},
    },
    "required": ["query"],
    "additionalProperties": False,
}


def search_codebase_tool(index: Any) -> Tool:
    """The tool bound to ``index`` (hybrid semantic + lexical search over the project's chunks)."""

    def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            hits = index.search(args["query"], k=args.get("k", 5), path_glob=args.get("path_glob"))
            state = index.status().state
        except Exception as exc:  # the index's own errors (IndexingError) and a broken store alike
            return failure("search_codebase", f"the codebase index failed: {exc}", hint="run 'assistant index .'")
        results = [{"location": h.location, "symbol": h.symbol, "snippet": h.snippet} for h in hits]
        data: dict[str, Any] = {"results": results}
        if state == "stale":
            data["note"] = "the index is stale; recent edits may be missing"
        return ToolResult("search_codebase", True, data)

    return Tool(name="search_codebase",
                description="Search the project's code by meaning and keywords (the codebase index); returns "
                "locations and snippets. Use read_file to see a whole file.",
                parameters=PARAMETERS, kind=ToolKind.READ, run=run)


REMEMBER_PARAMETERS = {
    "type": "object",
    "properties": {
        "fact": {"type": "string", "minLength": 3, "maxLength": 300,
                 "description": "One short fact about this project worth keeping, e.g. how to run its tests."},
    },
    "required": ["fact"],
    "additionalProperties": False,
}


def remember_tool(memory: Any) -> Tool:
    """Propose a fact for the project's episodic memory; it is kept only if the user approves."""

    def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            facts = memory.add(args["fact"])
        except OSError as exc:
            return failure("remember", f"could not write the memory file: {exc.strerror or exc}")
        return ToolResult("remember", True, {"remembered": args["fact"], "facts": len(facts)})

    return Tool(name="remember",
                description="Ask the user to keep a short fact about this project (e.g. how to run its tests) in "
                "the project's memory, which is shown to you at the start of every turn.",
                parameters=REMEMBER_PARAMETERS, kind=ToolKind.WRITE, run=run)


AGENT_TOOL_NAMES = ("remember", "search_codebase")
