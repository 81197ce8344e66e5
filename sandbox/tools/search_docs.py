"""search_docs: offline search of Python documentation (standard library and installed packages).

The index (``docs_index``) is built on first use and cached; one per session is kept in memory.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], Any] = {}

PARAMETERS = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 500,
                  "description": "What to look up: a name like 'json.dumps' or words like 'parse command line arguments'."},
        "k": {"type": "integer", "minimum": 1, "maximum": 20, "description": "How many results (default 5)."},
        "module": {"type": "string", "description": "Only results inside this module or package, e.g. 'pathlib'."},
    },
    "required": ["query"],
    "additionalProperties": False,
}  # fmt: skip


def get_index(ctx: ToolContext):
    from sandbox.tools.docs_index import default_cache_dir, open_index

    cache = Path(ctx.cache_dir) / "docs" if ctx.cache_dir else default_cache_dir()
    key = (str(ctx.project), str(cache))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = open_index(ctx.project, cache)
        return _LOADED[key]


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    index = get_index(ctx)
    hits = index.search(args["query"], args.get("k", 5), prefix=args.get("module"))
    if not hits:
        return failure("search_docs", f"nothing in the documentation matches '{args['query']}'", results=[])
    results = [
        {
            "name": entry.name,
            "kind": entry.kind,
            "signature": entry.signature,
            "summary": entry.summary(),
            "doc": entry.doc[:1200],
            "source": entry.source,
        }
        for entry, _score in hits
    ]
    return ToolResult(tool="search_docs", ok=True, data={"results": results, "count": len(results)})


TOOL = Tool(
    name="search_docs",
    description=(
        "Search Python documentation offline: the standard library's and installed packages' docstrings. "
        "Returns names, signatures and docstrings, best match first."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.READ,
    run=run,
)
