"""debug_code: run code in the sandbox under a small harness and diagnose what went wrong.

The harness runs the program with ``runpy``; on an uncaught exception it records every frame
(file, line, function, the local variables as bounded reprs) in a JSON file in the sandbox's
scratch space. The host maps the frames onto the source (the snippet, or the project file that
/workspace shows) with surrounding lines, and returns a diagnosis the model can act on: what
failed, where, with which values, and a hint for the common exception types.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from typing import Any

from sandbox.base import WORKSPACE
from sandbox.tools.base import Tool, ToolContext, ToolKind, ToolResult, failure, timeout_param
from sandbox.tools.paths import PathProblem, relative, resolve_in_project

CONTEXT = 3
MAX_FRAMES = 12

HARNESS = r'''
import json, os, reprlib, runpy, sys, traceback
target, report = sys.argv[1], sys.argv[2]
sys.argv = [target] + sys.argv[3:]
sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
shorten = reprlib.Repr()
shorten.maxstring = shorten.maxother = 120
shorten.maxlist = shorten.maxtuple = shorten.maxdict = shorten.maxset = 8
def safe(value):
    try:
        return shorten.repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"
def record(outcome, exc=None, code=None):
    data = {"outcome": outcome, "exit_code": code}
    if exc is not None:
        walked = list(traceback.walk_tb(exc.__traceback__))
        mine = [i for i, (f, _) in enumerate(walked) if f.f_code.co_filename == target]
        walked = walked[mine[0]:] if mine else walked  # drop the harness and runpy frames
        frames = []
        for frame, line in walked[-%(max_frames)d:]:
            names = [n for n in frame.f_locals if not (n.startswith("__") and n.endswith("__"))][:20]
            frames.append({"file": frame.f_code.co_filename, "line": line, "function": frame.f_code.co_name,
                           "locals": {n: safe(frame.f_locals[n]) for n in names}})
        data.update(type=type(exc).__name__, message=str(exc)[:1000], frames=frames)
        if isinstance(exc, SyntaxError):
            data.update(file=exc.filename, line=exc.lineno, column=exc.offset)
    with open(report, "w") as handle:
        json.dump(data, handle)
try:
    runpy.run_path(target, run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    record("exit", code=code)
    raise
except BaseException as exc:
    record("exception", exc)
    traceback.print_exc()
    sys.exit(1)
else:
    record("ok", code=0)
''' % {"max_frames": MAX_FRAMES}

HINTS = {
    "ZeroDivisionError": "a divisor is zero; check the values of the operands in the failing line",
    "NameError": "a name is used before it is defined, or misspelt; check imports and spelling",
    "AttributeError": "the object has no such attribute: check its type (see locals) or for a None value",
    "TypeError": "an operation got a value of the wrong type or the wrong number of arguments",
    "KeyError": "the key is missing from the mapping; use .get() or check how the mapping was built",
    "IndexError": "the index is past the end of the sequence; check its length and off-by-one bounds",
    "ValueError": "the value has the right type but an invalid content; check the input being converted",
    "ImportError": "the module or name cannot be imported; it may be missing from the sandbox image",
    "ModuleNotFoundError": "the module is not installed in the sandbox image (see `assistant sandbox build --requirements`)",
    "FileNotFoundError": "the file does not exist at that path; the project is at /workspace, writable space at /scratch",
    "PermissionError": "the sandbox forbids this write: the project is read-only, write under /scratch or /tmp",
    "RecursionError": "the recursion never reaches its base case, or recurses too deep",
    "AssertionError": "an assertion failed; compare the asserted values shown in locals",
    "UnboundLocalError": "a local variable is read before assignment, often shadowing a global of the same name",
    "SyntaxError": "the code does not parse; fix the marked line",
    "IndentationError": "the indentation is inconsistent at the marked line",
    "StopIteration": "an iterator was exhausted; check next() calls",
    "MemoryError": "the program ran out of memory (the sandbox limits memory)",
}

PARAMETERS = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 100_000, "description": "Python code to run and debug."},
        "path": {"type": "string", "minLength": 1, "description": "Or: a .py file of the project to run."},
        "args": {"type": "array", "items": {"type": "string"}, "maxItems": 50, "description": "Command-line arguments."},
        "timeout": timeout_param(),
    },
    "minProperties": 1,
    "additionalProperties": False,
}


def _context(lines: list[str], line: int | None) -> list[dict[str, Any]]:
    if not line or not lines:
        return []
    first, last = max(1, line - CONTEXT), min(len(lines), line + CONTEXT)
    return [{"line": n, "text": lines[n - 1], "failing": n == line} for n in range(first, last + 1)]


def _source_for(path: str, snippet_path: str, snippet: list[str], ctx: ToolContext) -> tuple[str, list[str], bool]:
    """(display name, source lines, in_user_code) for a frame's file."""
    if path == snippet_path:
        return "snippet.py", snippet, True
    if path.startswith(WORKSPACE + "/"):
        rel = path[len(WORKSPACE) + 1 :]
        try:
            real = resolve_in_project(ctx.project, rel)
            return rel, real.read_text(encoding="utf-8", errors="replace").splitlines(), True
        except (PathProblem, OSError):
            return rel, [], True
    return path, [], False


def diagnose(report: dict[str, Any], snippet_path: str, snippet: list[str], ctx: ToolContext) -> dict[str, Any]:
    frames = []
    sources = []
    for frame in report.get("frames", []):
        name, lines, mine = _source_for(frame["file"], snippet_path, snippet, ctx)
        text = lines[frame["line"] - 1].strip() if lines and 0 < frame["line"] <= len(lines) else None
        frames.append({"file": name, "line": frame["line"], "function": frame["function"], "code": text,
                       "in_user_code": mine, "locals": frame.get("locals", {})})  # fmt: skip
        sources.append(lines)
    exc_type = report.get("type")
    diagnosis: dict[str, Any] = {
        "outcome": "exception",
        "exception": {"type": exc_type, "message": report.get("message", "")},
        "frames": frames,
        "hint": HINTS.get(exc_type or "", "read the failing line and the local values"),
    }
    if report.get("line") and report.get("file"):  # a SyntaxError in the program itself
        name, lines, _ = _source_for(report["file"], snippet_path, snippet, ctx)
        diagnosis["location"] = {"file": name, "line": report["line"], "column": report.get("column")}
        diagnosis["context"] = _context(lines, report["line"])
        return diagnosis
    user_frames = [i for i, f in enumerate(frames) if f["in_user_code"]]
    index = user_frames[-1] if user_frames else len(frames) - 1
    if index >= 0:
        where = frames[index]
        diagnosis["location"] = {"file": where["file"], "line": where["line"], "function": where["function"],
                                 "code": where["code"]}  # fmt: skip
        diagnosis["context"] = _context(sources[index], where["line"])
        diagnosis["locals_at_failure"] = where["locals"]
        if where is not frames[-1]:
            diagnosis["raised_in"] = {"file": frames[-1]["file"], "line": frames[-1]["line"],
                                      "function": frames[-1]["function"]}  # fmt: skip
    return diagnosis


def _static_syntax(source: str) -> dict[str, Any] | None:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        lines = source.splitlines()
        return {
            "outcome": "syntax_error",
            "exception": {"type": type(exc).__name__, "message": exc.msg},
            "location": {"file": "snippet.py", "line": exc.lineno, "column": exc.offset},
            "context": _context(lines, exc.lineno),
            "hint": HINTS.get(type(exc).__name__, HINTS["SyntaxError"]),
        }
    return None


def run(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    if ("code" in args) == ("path" in args):
        return failure("debug_code", "give exactly one of 'code' or 'path'")
    sandbox = ctx.get_sandbox()
    run_id = uuid.uuid4().hex[:8]
    report_path = f"{sandbox.scratch}/.assistant/debug-{run_id}.json"
    if "code" in args:
        snippet = args["code"]
        static = _static_syntax(snippet)
        if static:
            return ToolResult(tool="debug_code", ok=True, data=static)
        snippet_path = f"{sandbox.scratch}/.assistant/debug-{run_id}.py"
        setup = f"import os\nos.makedirs({sandbox.scratch + '/.assistant'!r}, exist_ok=True)\n"
        setup += f"open({snippet_path!r}, 'w').write({snippet!r})\n"
        target = snippet_path
        snippet_lines = snippet.splitlines()
    else:
        try:
            real = resolve_in_project(ctx.project, args["path"])
        except PathProblem as exc:
            return failure("debug_code", str(exc))
        if not real.is_file():
            return failure("debug_code", f"{args['path']} is not a file")
        target = f"{sandbox.workspace}/{relative(ctx.project, real)}"
        snippet_path, snippet_lines = "", []
        setup = f"import os\nos.makedirs({sandbox.scratch + '/.assistant'!r}, exist_ok=True)\n"
    program = setup + f"import sys\nsys.argv[1:1] = [{target!r}, {report_path!r}]\n" + HARNESS
    result = sandbox.run(program, "python", timeout=args.get("timeout"), args=list(args.get("args", [])))
    if result.refused:
        return failure("debug_code", result.stderr)
    output = {"stdout": result.stdout[-4000:], "stderr": result.stderr[-4000:], "exit_code": result.exit_code}
    if result.timed_out:
        data = {"outcome": "timeout", "hint": "the program did not finish in time: look for an endless loop or a blocking read", **output}
        return ToolResult(tool="debug_code", ok=True, data=data)
    if result.oom_killed:
        return ToolResult(tool="debug_code", ok=True, data={"outcome": "out_of_memory", "hint": HINTS["MemoryError"], **output})
    raw = sandbox.read_file(report_path, 1 << 20)
    try:
        report = json.loads(raw) if raw else None
    except ValueError:
        report = None
    if report is None:
        return failure("debug_code", "the program ended without a report (it may have killed itself or the harness)",
                       **output)  # fmt: skip
    if report["outcome"] in ("ok", "exit"):
        data = {"outcome": "ok" if report.get("exit_code") in (0, None) else "exit", **output}
        data["exit_code"] = report.get("exit_code")
        return ToolResult(tool="debug_code", ok=True, data=data)
    data = diagnose(report, snippet_path, snippet_lines, ctx)
    data.update(output)
    data["traceback"] = _traceback_tail(result.stderr)
    return ToolResult(tool="debug_code", ok=True, data=data)


def _traceback_tail(stderr: str) -> str:
    at = stderr.rfind("Traceback (most recent call last)")
    text = stderr[at:] if at >= 0 else stderr
    text = re.sub(r'File "[^"]*/\.assistant/debug-[0-9a-f]+\.py"', 'File "snippet.py"', text)
    return "\n".join(text.strip().splitlines()[-40:])


TOOL = Tool(
    name="debug_code",
    description=(
        "Run Python code (or a project file) in the sandbox and diagnose a failure: exception type and "
        "message, the failing line with surrounding source, the call stack with local variable values, "
        "and a hint. Syntax errors are located without running."
    ),
    parameters=PARAMETERS,
    kind=ToolKind.EXECUTE,
    run=run,
)
