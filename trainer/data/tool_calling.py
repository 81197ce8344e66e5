"""Stage 3 data: multi-turn tool-calling conversations with REAL tool results.

Every tool call in a generated conversation is executed during preparation through
``sandbox.tools.call_tool`` on a small sample project (``trainer.data.tool_projects``) inside
the sandbox, and the final answer is written from that real result. Families cover every tool,
multi-step chains (run tests → read the failing file → patch → rerun), clarifications and
refusals where no tool fits, and recovery from a tool error.

Held-out split: request templates, argument values (numbers, words, function names, packages,
standard-library files, documentation queries) and projects are assigned to train or held-out
by a stable hash, so no held-out phrasing or argument value occurs in training
(``check_no_leakage``). Output is deterministic for a seed (tool results are cached per call).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data.tool_projects import FUNCTIONS, SampleProject, _split_of, build_projects

SYSTEM_PROMPT = ("You are a coding assistant working in the user's project. Call a tool when you need to run code, "
                 "read or search files, or look something up; answer from the tool results.")
TOOLS_STYLE = "compact"
_RUN_ID = re.compile(r"(/scratch/\.assistant/[a-z]+-)[0-9a-f]{6,}")
_ELAPSED = re.compile(r"(\bin )\d+\.\d+s\b")
RESULT_STRING_LIMIT = 400  # characters kept of each long string field of a tool result
DATASET_VERSION = 4
TRAIN_PROJECTS, HELDOUT_PROJECTS = 48, 8  # sample projects per split (many, so no project's files are memorised)


# ---- running tools ------------------------------------------------------------------------------


class ToolRunner:
    """Runs tool calls for real on a project, in the sandbox; identical calls are cached."""

    def __init__(self, sandbox_settings: Any) -> None:
        self.settings = sandbox_settings
        self.contexts: dict[Path, Any] = {}
        self.cache: dict[str, dict] = {}
        self.calls = 0

    def _context(self, root: Path):
        from sandbox.factory import open_sandbox
        from sandbox.tools import ToolContext

        root = Path(root).resolve()
        if root not in self.contexts:
            # backend "none" (no isolation) is only ever chosen explicitly: the user said yes for every call
            confirm = (lambda *args, **kwargs: True) if self.settings.backend == "none" else None
            self.contexts[root] = ToolContext(project=root, sandbox_factory=lambda: open_sandbox(self.settings, root, confirm=confirm),
                                              approve=lambda approval: True)
        return self.contexts[root]

    def call(self, root: Path, name: str, arguments: dict, cache: bool = True) -> dict:
        from sandbox.tools import call_tool

        key = hashlib.sha256(json.dumps([str(root), name, arguments], sort_keys=True).encode()).hexdigest()
        if cache and key in self.cache:
            return self.cache[key]
        result = call_tool(name, arguments, self._context(root)).to_dict()
        for noisy in ("duration_s", "backup_id"):
            result.pop(noisy, None)
        # per-run random file names under the sandbox's scratch (debug-1a2b3c4d.py): fixed, so a seed
        # gives the same dataset byte for byte
        text = _RUN_ID.sub(r"\g<1>run", json.dumps(result, ensure_ascii=False))
        result = json.loads(_ELAPSED.sub(r"\g<1>0.1s", text))  # and pytest's "in 0.11s"
        self.calls += 1
        if cache:
            self.cache[key] = result
        return result

    def forget(self, root: Path) -> None:
        ctx = self.contexts.pop(Path(root).resolve(), None)
        if ctx is not None and ctx.sandbox is not None:
            ctx.sandbox.close()

    def close(self) -> None:
        for root in list(self.contexts):
            self.forget(root)


def compact_result(result: dict, limit: int = RESULT_STRING_LIMIT) -> str:
    """The tool message text as the agent shows it: the real result as compact JSON, each long
    string cut in its middle (head and tail kept, with a marker saying how much went)."""

    def cut(value: Any) -> Any:
        if isinstance(value, str):
            if len(value) <= limit:
                return value
            keep = limit // 2
            return value[:keep] + f"\n…[{len(value) - 2 * keep} chars truncated]…\n" + value[-keep:]
        if isinstance(value, list):
            return [cut(v) for v in value[:8]]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    return json.dumps(cut(result), ensure_ascii=False, separators=(",", ":"))


# ---- examples -----------------------------------------------------------------------------------


@dataclass
class Example:
    """One conversation; ``checks`` says what the eval compares (calls and the answer's key facts)."""

    id: str
    split: str
    family: str
    template: str
    messages: list[dict]
    project: str | None
    key_facts: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # argument values, for the leakage check

    def to_json(self) -> dict:
        return {"id": self.id, "split": self.split, "family": self.family, "template": self.template, "project": self.project,
                    "key_facts": self.key_facts, "values": self.values, "messages": self.messages}


def default_system_prompt(project_root: Path) -> str:
    return SYSTEM_PROMPT


class Builder:
    """Collects one conversation while executing its calls."""

    system_prompt: Callable[[Path], str] = staticmethod(default_system_prompt)

    def __init__(self, runner: ToolRunner, project: SampleProject | None, request: str) -> None:
        self.runner, self.project = runner, project
        system = self.system_prompt(project.root) if project is not None else SYSTEM_PROMPT
        self.messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": request}]

    def call(self, name: str, arguments: dict, note: str = "", cache: bool = True) -> dict:
        self.messages.append({"role": "assistant", "content": note, "tool_call": {"name": name, "arguments": arguments}})
        result = self.runner.call(self.project.root, name, arguments, cache=cache)
        self.messages.append({"role": "tool", "content": compact_result(result)})
        return result

    def say(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})


def _typo(text: str, rng: random.Random) -> str:
    """A realistic slip: two adjacent letters swapped, or a letter dropped, in one longer word."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) > 4 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.5 else w[:j] + w[j + 1 :]
    return " ".join(words)


def _vary(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        text = _typo(text, rng)
    elif roll < 0.25:
        text = text.lower().rstrip("?.!")
    elif roll < 0.32:
        text = "please " + text[0].lower() + text[1:]
    return text


def _request(template: str, rng: random.Random, **values: Any) -> str:
    """A request from a template: the slips (typos, lower case) touch the template's words only,
    never the values put into it (code, names, paths), which the call must then copy exactly."""
    return _vary(template, rng).format(**values)


def _pick_template(templates: list[str], split: str, rng: random.Random) -> str:
    """Templates are split by position: every fourth one is held out."""
    usable = [t for i, t in enumerate(templates) if (i % 4 == 3) == (split == "heldout")]
    return rng.choice(usable)


# Each family: (templates, function(builder_factory, rng, split, template) -> Example fields)
# A family function returns (messages, key_facts, values) or None when it cannot apply.

PY_TEMPLATES = [
    "What is {expr} in Python?", "Compute {expr} for me.", "Can you run {expr} and tell me the result?",
    "Evaluate {expr}.", "Quick one: what does {expr} give?", "Use Python to calculate {expr}.",
    "I need the value of {expr}.", "Run this in python: {expr}", "calculate {expr} please",
    "What's the output of print({expr})?", "Work out {expr} with Python.", "Tell me what {expr} evaluates to.",
]


def _number_pool(split: str) -> list[int]:
    return [n for n in range(2, 400) if _split_of(str(n), "number") == split]


WORDS = ["banana", "rocket", "python", "window", "garden", "silver", "planet", "bridge", "candle", "forest", "yellow",
         "marble", "engine", "orange", "castle", "pepper", "mirror", "button", "island", "ladder", "jungle", "velvet",
         "tunnel", "breeze", "cactus", "dragon", "falcon", "harbor", "kettle", "lemon", "meadow", "nickel", "oyster",
         "parrot", "quartz", "saddle", "timber", "violet", "walnut", "zephyr", "anchor", "bucket", "copper", "dinner",
         "almond", "basket", "beacon", "canyon", "carpet", "cherry", "cobalt", "comet", "crystal", "desert", "dolphin",
         "ember", "feather", "glacier", "granite", "hammer", "helmet", "honey", "iris", "jacket", "lantern", "magnet",
         "mango", "maple", "meteor", "needle", "olive", "orbit", "paddle", "pebble", "pencil", "pillow", "pirate",
         "pumpkin", "puzzle", "rabbit", "raven", "ribbon", "river", "saffron", "salmon", "shadow", "spider", "spruce",
         "summit", "sunset", "teapot", "thunder", "tiger", "tomato", "trumpet", "tulip", "turtle", "umbrella", "valley",
         "wagon", "whisper", "willow", "wizard", "wombat", "zebra", "apricot", "badger", "blossom", "cedar", "cinnamon",
         "compass", "cricket", "dune", "emerald", "fountain", "goblin", "hazel", "igloo", "juniper", "koala", "lagoon"]


def _word_pool(split: str) -> list[str]:
    return [w for w in WORDS if _split_of(w, "word") == split]


def _expressions(rng: random.Random, split: str) -> tuple[str, str]:
    """(python expression, its source code) from a few shapes, with split-specific values."""
    n = _number_pool(split)
    w = _word_pool(split)
    a, b = rng.sample(n, 2)
    word = rng.choice(w)
    shapes = [
        f"{a} * {b}", f"{a} ** 2 + {b}", f"sum(range({a}))", f"len('{word}' * {b % 7 + 2})", f"'{word}'.upper()",
        f"sorted('{word}')", f"{a} // 7 + {b} % 5", f"'{word}'[::-1]", f"max({a}, {b}) - min({a}, {b})",
        f"round({a} / {b}, 3)", f"'{word}'.count('a')", f"bin({a})", f"{a} % {b % 13 + 2}", f"len(str({a} ** {b % 9 + 3}))",
        f"hex({a * b})", f"list(range({a % 10}, {a % 10 + 4}))", f"'{word}'.capitalize() + '!'",
        f"sum(int(d) for d in str({a * b}))", f"abs({a} - {b} * 3)", f"'-'.join('{word}')",
    ]
    expr = rng.choice(shapes)
    return expr, f"print({expr})"


def family_execute_python(runner, project, rng, split):
    expr, code = _expressions(rng, split)
    template = _pick_template(PY_TEMPLATES, split, rng)
    request = _request(template, rng, expr=expr)
    b = Builder(runner, project, request)
    result = b.call("execute_python", {"code": code})
    out = (result.get("stdout") or "").strip()
    if not result.get("ok") or not out:
        return None
    b.say(rng.choice([f"{expr} is {out}.", f"The result is {out}.", f"It prints {out}.", f"Python says: {out}"]))
    return template, b.messages, [out], [code]


BASH_TASKS = [
    (["How many lines are in {file}?", "Count the lines of {file}.", "what's the line count of {file}",
      "Give me the number of lines in {file}.", "wc -l on {file} please", "How long is {file} in lines?",
      "Tell me how many lines {file} has.", "Line count for {file}?"],
     lambda p, f: f"wc -l < {f}", lambda out, f: (f"{f} has {out} lines.", [out])),
    (["How many Python files does this project have?", "Count the .py files here.", "number of python files in the project?",
      "How many .py files are there?", "Count python sources in this repo.", "Tell me how many Python modules there are.",
      "how many py files do we have", "What's the count of Python files?"],
     lambda p, f: "find . -name '*.py' | wc -l", lambda out, f: (f"There are {out} Python files.", [out])),
    (["Which Python version is in the sandbox?", "What python version do we run?", "check the python version",
      "Show me the Python version.", "What version of Python is installed?", "python --version please",
      "Tell me the interpreter version.", "Which python3 is available?"],
     lambda p, f: "python3 --version", lambda out, f: (f"The sandbox runs {out}.", [out.split()[-1] if out else out])),
    (["Show the first {n} lines of {file}.", "Print the top {n} lines of {file}.", "head {file}, {n} lines",
      "Give me the first {n} lines in {file}.", "What are the opening {n} lines of {file}?", "List the first {n} lines of {file}.",
      "display {n} lines from the start of {file}", "First {n} lines of {file}, please."],
     lambda p, f, n=None: None, None),
    (["How many times does 'def' appear in {file}?", "Count the function definitions in {file} with grep.",
      "how many defs are in {file}", "Count 'def' lines in {file}.", "Number of def statements in {file}?",
      "grep -c def {file} for me", "Tell me how many lines of {file} contain def.", "How many def lines does {file} have?"],
     lambda p, f: f"grep -c 'def ' {f}", lambda out, f: (f"{f} has {out} lines with 'def '.", [out])),
]


def family_execute_bash(runner, project, rng, split):
    index = rng.choice([0, 3, 4] if split == "heldout" else range(len(BASH_TASKS)))
    templates, make, answer = BASH_TASKS[index]
    template = _pick_template(templates, split, rng)
    file = rng.choice([*project.module_paths(), *project.stdlib_files] + (project.test_files if split == "train" else []))
    n = rng.choice([m for m in range(2, 9)])
    if index == 3:
        command = f"head -n {n} {file}"
    else:
        command = make(project, file)
    request = _request(template, rng, file=file, n=n)
    b = Builder(runner, project, request)
    result = b.call("execute_bash", {"command": command})
    out = (result.get("stdout") or "").strip()
    if not result.get("ok") or not out:
        return None
    if index == 3:
        first = out.splitlines()[0].strip() or out.strip()
        text, facts = f"The first {n} lines of {file}:\n{out}", [first]
    else:
        text, facts = answer(out, file)
    b.say(text)
    return template, b.messages, facts, [command]


TEST_TEMPLATES = [
    "Run the tests.", "Run the tests and tell me which fail.", "Do the tests pass?", "Can you run the test suite?",
    "run pytest", "Are there failing tests?", "Check whether the tests are green.", "Execute the project's tests.",
    "Please run all tests and summarise.", "Which tests are broken?", "test everything and report back",
    "How many tests pass right now?", "How many tests pass?", "how many tests are failing", "Count the passing tests.",
    "What's the test status?", "Run pytest and give me the counts.", "Are all the tests passing?", "Tell me how many tests fail.",
    "check the test results",
]


def _test_summary(result: dict) -> tuple[str, list[str]]:
    counts = result.get("counts") or {}
    failures = result.get("failures") or []
    passed, failed = counts.get("passed", 0), counts.get("failed", 0) + counts.get("errors", 0)
    if not failures:
        return f"All {passed} tests pass.", [str(passed)]
    names = [f["test"].split("::")[-1] for f in failures]
    first = failures[0]
    text = (f"{passed} passed and {failed} failed: {', '.join(names)}. "
            f"{names[0]} fails with {first.get('message', '').splitlines()[0] if first.get('message') else 'an error'}.")
    return text, names


def family_run_tests(runner, project, rng, split):
    template = _pick_template(TEST_TEMPLATES, split, rng)
    b = Builder(runner, project, _request(template, rng))
    args = {} if rng.random() < 0.7 or split == "heldout" else {"path": project.test_file}
    result = b.call("run_tests", args)
    if "counts" not in result:
        return None
    text, facts = _test_summary(result)
    b.say(text)
    return template, b.messages, facts, [json.dumps(args)] if args else []


ANALYZE_TEMPLATES = [
    "Analyze {file} for problems.", "Lint {file}.", "Any issues in {file}?", "Check {file} for bugs and style problems.",
    "Run static analysis on {file}.", "Is {file} clean?", "review {file} with the linters", "What does the linter say about {file}?",
    "Check the code quality of {file}.", "any lint warnings in {file}?", "Static checks for {file}, please.",
    "Look for problems in {file}.",
]


def family_analyze_code(runner, project, rng, split):
    template = _pick_template(ANALYZE_TEMPLATES, split, rng)
    file = rng.choice([*project.stdlib_files, *project.module_paths()])
    b = Builder(runner, project, _request(template, rng, file=file))
    result = b.call("analyze_code", {"path": file})
    if not result.get("ok"):
        return None
    findings = result.get("findings") or []
    if not findings:
        b.say(f"{file} looks clean: no syntax, lint, security or complexity findings.")
        return template, b.messages, ["clean"], [file]
    top = findings[0]
    total = sum((result.get("summary") or {}).values())
    b.say(f"{total} findings in {file}. The first: line {top['line']}, {top.get('code', '')} {top['message']}")
    return template, b.messages, [str(top["line"])], [file]


DEBUG_SNIPPETS = [
    ("items = [{a}, {b}]\nprint(items[{c}])", "IndexError"),
    ("data = {{'{w}': {a}}}\nprint(data['{w2}'])", "KeyError"),
    ("value = int('{w}')\nprint(value)", "ValueError"),
    ("total = {a} / ({b} - {b})\nprint(total)", "ZeroDivisionError"),
    ("name = '{w}'\nprint(name + {a})", "TypeError"),
    ("import math\nprint(math.sqrt(-{a}))", "ValueError"),
    ("x = None\nprint(x.{w}())", "AttributeError"),
    ("print(undefined_{w} + {a})", "NameError"),
    ("print([{a}, {b}][{c}])", "IndexError"),
    ("print(int('{w}'))", "ValueError"),
    ("print(len('{w}')", "SyntaxError"),
    ("if {a} > {b}\n    print('{w}')", "SyntaxError"),
    ("values = [{a}, {b}\nprint(values)", "SyntaxError"),
    ("def {w}():\nreturn {a}", "IndentationError"),
    ("counts = {{'{w}': {a}}}\ncounts['{w}'] += '{w2}'", "TypeError"),
]
DEBUG_TEMPLATES = [
    "Why does this crash?\n{code}", "Debug this code:\n{code}", "This fails, what's wrong?\n{code}",
    "Find the bug:\n{code}", "help, error when running:\n{code}", "What error does this raise?\n{code}",
    "Can you diagnose this snippet?\n{code}", "why doesnt this work\n{code}",
    "What goes wrong here?\n{code}", "Explain the error in:\n{code}", "Run this and tell me the error:\n{code}",
    "Is there a bug in this?\n{code}",
]


def family_debug_code(runner, project, rng, split):
    n, w = _number_pool(split), _word_pool(split)
    shape, _ = rng.choice(DEBUG_SNIPPETS)
    a, b = rng.sample(n, 2)
    w1, w2 = rng.sample(w, 2)
    code = shape.format(a=a, b=b, c=rng.randrange(2, 9), w=w1, w2=w2)
    template = _pick_template(DEBUG_TEMPLATES, split, rng)
    bld = Builder(runner, project, _request(template, rng, code=code))
    result = bld.call("debug_code", {"code": code})
    exc = result.get("exception") or {}
    if not exc:
        return None
    line = (result.get("location") or {}).get("line", "?")
    hint = result.get("hint") or ""
    bld.say(f"It raises {exc['type']}: {exc.get('message', '')} on line {line}." + (f" Fix: {hint}." if hint else ""))
    return template, bld.messages, [exc["type"]], [code]


DOC_QUERIES = ["json.dumps", "json.loads", "os.path.join", "os.listdir", "pathlib.Path.read_text", "re.sub", "re.findall",
               "itertools.chain", "itertools.groupby", "collections.Counter", "collections.defaultdict", "functools.lru_cache",
               "textwrap.dedent", "shutil.copyfile", "subprocess.run", "datetime.date.today", "random.choice",
               "statistics.median", "math.isclose", "string.Template", "heapq.heappush", "bisect.insort", "csv.reader",
               "argparse.ArgumentParser", "glob.glob", "fnmatch.fnmatch", "hashlib.sha256", "base64.b64encode",
               "tempfile.mkdtemp", "shlex.split", "time.sleep", "uuid.uuid4", "zipfile.ZipFile", "operator.itemgetter",
               "enum.Enum", "dataclasses.asdict", "contextlib.suppress", "urllib.parse.urlparse", "copy.deepcopy",
               "pprint.pformat", "difflib.unified_diff", "gzip.open", "sqlite3.connect", "logging.getLogger"]
DOC_TEMPLATES = [
    "What does {q} do?", "Look up the docs for {q}.", "How do I use {q}?", "Show me the signature of {q}.",
    "docs for {q} please", "Explain {q} from the Python docs.", "What arguments does {q} take?", "search the documentation for {q}",
    "Find the documentation of {q}.", "what is {q} for", "Describe {q}.", "Give me the docs of {q}.",
]


def family_search_docs(runner, project, rng, split):
    queries = [q for q in DOC_QUERIES if _split_of(q, "docs") == split]
    query = rng.choice(queries)
    template = _pick_template(DOC_TEMPLATES, split, rng)
    b = Builder(runner, project, _request(template, rng, q=query))
    result = b.call("search_docs", {"query": query})
    hits = result.get("results") or []
    leaf = query.rsplit(".", 1)[-1]
    hits = [h for h in hits if h.get("name", "").rsplit(".", 1)[-1] == leaf]
    if not hits:
        return None  # the docs index answered off the mark: no grounded answer to train on
    top = hits[0]
    summary = (top.get("summary") or "").strip()
    b.say(f"{top['name']}{top.get('signature', '')}: {summary}")
    return template, b.messages, [top["name"]], [query]


READ_TEMPLATES = [
    "Show me {file}.", "What's in {file}?", "Open {file}.", "Read {file} for me.", "cat {file}",
    "Can I see the contents of {file}?", "Print {file}.", "display {file}",
    "Show me the code in {file}.", "read {file} please", "What does {file} contain?", "Let me see {file}.",
]


def family_read_file(runner, project, rng, split):
    shared = [*project.test_files, "README.md"] if split == "train" else []  # paths every project has
    file = rng.choice([*project.module_paths(), *shared, *project.stdlib_files])
    template = _pick_template(READ_TEMPLATES, split, rng)
    b = Builder(runner, project, _request(template, rng, file=file))
    args = {"path": file, "max_lines": 40} if file in project.stdlib_files else {"path": file}
    result = b.call("read_file", args)
    if not result.get("ok"):
        return None
    names = project.defined_names(file) if file.endswith(".py") else []
    total = result.get("total_lines")
    if names:
        listed = ", ".join(n for n, _ in names[:6])
        b.say(f"{file} has {total} lines and defines {listed}.")
        return template, b.messages, [names[0][0]], [file]
    first = next((ln for ln in (result.get("content") or "").splitlines() if ln.strip()), "")
    text = first.split("\t", 1)[-1].strip()
    b.say(f"{file} has {total} lines; it starts with: {text}")
    return template, b.messages, [str(total)], [file]


LIST_TEMPLATES = [
    "What files are in this project?", "List the files.", "Show me the project layout.", "ls the repo",
    "Which files are under {dir}?", "List the files in {dir}.", "What is in the {dir} folder?", "show the python files",
    "Which files does this repo have?", "list everything in the project", "Show all files.", "What's in {dir}?",
    "Files under {dir}, please.", "Give me the file list.", "show me the tree", "What does {dir} contain?",
]


def family_list_files(runner, project, rng, split):
    template = _pick_template(LIST_TEMPLATES, split, rng)
    directory = rng.choice([project.package, "tests", *(["vendor"] if project.stdlib_files else [])] if split == "train"
                           else [project.package])
    args: dict = {}
    if "{dir}" in template:
        args = {"path": directory}
    elif "python" in template:
        args = {"pattern": "*.py"}
    b = Builder(runner, project, _request(template, rng, dir=directory))
    result = b.call("list_files", args)
    files = result.get("files") or []
    if not files:
        return None
    b.say(f"{len(files)} files: {', '.join(files)}.")
    return template, b.messages, [files[0]], [json.dumps(args)] if args else []


SEARCH_TEMPLATES = [
    "Where is {name} defined?", "Find the definition of {name}.", "Which file has {name}?", "search the code for {name}",
    "Locate the function {name}.", "In which file is {name} implemented?", "where's {name}", "Find {name} in the codebase.",
    "Where can I find {name}?", "which module defines {name}", "Show me where {name} lives.", "Where is the code for {name}?",
]


def family_search_code(runner, project, rng, split):
    if rng.random() < 0.6 or not project.stdlib_files:
        fn = rng.choice(project.functions)
        name = fn.name
    else:
        path = rng.choice(project.stdlib_files)
        names = project.defined_names(path)
        if not names:
            return None
        name = rng.choice(names)[0]
    template = _pick_template(SEARCH_TEMPLATES, split, rng)
    b = Builder(runner, project, _request(template, rng, name=name))
    pattern = f"(def|class) {name}\\b"
    result = b.call("search_code", {"pattern": pattern})
    matches = result.get("matches") or []
    if not matches:
        return None
    m = matches[0]
    b.say(f"{name} is defined in {m['path']} at line {m['line']}.")
    return template, b.messages, [f"{m['path']}"], [name]


CALL_TEMPLATES = [
    "What does {fn}({args}) return?", "Call {fn} with {args} and tell me the result.", "what is {fn}({args})",
    "Try {fn}({args}) from {module}.", "Evaluate {fn}({args}) using the project code.", "Give me the output of {fn}({args}).",
    "run {fn}({args})", "What do I get from {fn}({args})?",
    "What is the result of {fn}({args})?", "call {fn}({args})", "Tell me what {fn}({args}) returns.",
    "Check the value of {fn}({args}).",
]
# base name -> arguments as the user would type them: (rng, numbers, words) of the split's pools
CALL_ARGS: dict[str, Callable[[random.Random, list[int], list[str]], str]] = {
    "add": lambda r, n, w: f"{r.choice(n)}, {r.choice(n)}", "clamp": lambda r, n, w: f"{r.choice(n)}, 10, 200",
    "word_count": lambda r, n, w: repr(" ".join(r.sample(w, r.randrange(2, 5)))),
    "is_palindrome": lambda r, n, w: repr(r.choice(["Racecar", "Noon", "Stats", "python", "level", "Madam", "kayak", *w])),
    "celsius_to_fahrenheit": lambda r, n, w: str(r.choice(n)), "median": lambda r, n, w: str(r.sample(n, 3)),
    "factorial": lambda r, n, w: str(r.choice(n) % 12), "slugify": lambda r, n, w: repr(" ".join(r.sample(w, 3)).title()),
    "fizzbuzz": lambda r, n, w: str(r.choice(n)), "average": lambda r, n, w: str(r.sample(n, 4)),
    "reverse_words": lambda r, n, w: repr(" ".join(r.sample(w, 3))), "count_vowels": lambda r, n, w: repr(r.choice(w)),
    "is_even": lambda r, n, w: str(r.choice(n)), "gcd": lambda r, n, w: f"{r.choice(n)}, {r.choice(n)}",
    "initials": lambda r, n, w: repr(" ".join(r.sample(w, 3))),
    "repeat_text": lambda r, n, w: f"{r.choice(w)!r}, {r.choice(n) % 4 + 2}",
    "squares": lambda r, n, w: str(r.sample(n, r.randrange(2, 5))), "letter_counts": lambda r, n, w: repr(r.choice(w)),
    "digit_sum": lambda r, n, w: str(r.choice(n) * r.choice(n)), "is_prime": lambda r, n, w: str(r.choice(n)),
    "zero_pad": lambda r, n, w: f"{r.choice(n)}, {r.randrange(4, 8)}", "largest": lambda r, n, w: str(r.sample(n, 4)),
    "chunked": lambda r, n, w: f"{r.sample(n, r.randrange(4, 7))}, {r.randrange(2, 4)}",
    "minutes_label": lambda r, n, w: str(r.choice(n) * 3),
    "swap_case": lambda r, n, w: repr(r.choice(w).capitalize() + " " + r.choice(w).upper()),
    "total_length": lambda r, n, w: str(r.sample(w, r.randrange(2, 4))),
    "count_above": lambda r, n, w: f"{r.sample(n, 4)}, {r.choice(n)}", "first_sorted": lambda r, n, w: str(r.sample(w, 3)),
}


def _double_quoted(args: str) -> str:
    """The same arguments with double-quoted strings, as many users type them."""
    return args.replace("'", '"') if '"' not in args else args


def family_call_function(runner, project, rng, split):
    fn = rng.choice(project.functions)
    base = FUNCTIONS[fn.pool_index]["names"][0]
    args = CALL_ARGS[base](rng, _number_pool(split), _word_pool(split))
    if rng.random() < 0.3:
        args = _double_quoted(args)
    template = _pick_template(CALL_TEMPLATES, split, rng)
    b = Builder(runner, project, _request(template, rng, fn=fn.name, args=args, module=fn.module))
    # execute_python runs a file under /tmp, so the project (the working directory) goes on sys.path first
    code = f"import sys\nsys.path.insert(0, '.')\nfrom {fn.module} import {fn.name}\nprint({fn.name}({args}))"
    result = b.call("execute_python", {"code": code})
    out = (result.get("stdout") or "").strip()
    if not result.get("ok") or not out:
        return None
    b.say(f"{fn.name}({args}) returns {out}.")
    return template, b.messages, [out], [code]


WRITE_TEMPLATES = [
    "Create a file {file} containing {content!r}.", "Write {content!r} to {file}.", "make a new file {file} with {content!r}",
    "Add a file called {file} that says {content!r}.", "Save {content!r} into {file}.", "New file {file}: {content!r}",
    "please write a file {file} with the text {content!r}", "Put {content!r} in a new file {file}.",
]


def family_write_file(runner, project, rng, split, scratch: Path):
    work = _fresh_copy(project, scratch, rng)
    words = _word_pool(split)
    word = rng.choice(words)
    file = rng.choice([f"notes/{word}.txt", f"{word}.md", f"docs/{word}_notes.txt", f"{word.upper()}.txt", f"{word.capitalize()}.md",
                       f"{word}_{rng.choice(words)}.txt", f"{word.upper()}_NOTES.md", f"todo/{word}.txt"])
    number = rng.choice(_number_pool(split))
    content = rng.choice([f"{word} {number}", " ".join(rng.sample(words, rng.randrange(2, 5))),
                          f"{rng.choice(words)} {word} bug", f"TODO: {word} {rng.choice(words)}", f"{word.capitalize()} = {number}",
                          f"check {word} and {rng.choice(words)}."]) + "\n"
    template = _pick_template(WRITE_TEMPLATES, split, rng)
    b = Builder(runner, work, _request(template, rng, file=file, content=content.strip()))
    result = b.call("write_file", {"path": file, "content": content}, cache=False)
    runner.forget(work.root)
    if not result.get("ok"):
        return None
    b.say(f"Created {file}.")
    return template, b.messages, [file], [file]


FIX_TEMPLATES = [
    "Fix the failing test.", "The tests fail, please fix the code.", "Make the test suite pass.", "fix the bug in this project",
    "Something is broken; find it and fix it.", "Repair the failing function.", "Get the tests green again.", "pls fix failing tests",
]


def _fix_patch(project: SampleProject) -> tuple[str, str] | None:
    fn = next((f for f in project.functions if f.buggy), None)
    if fn is None:
        return None
    old, new = FUNCTIONS[fn.pool_index]["bug"]
    source = (project.root / fn.path).read_text().splitlines()
    for number, text in enumerate(source, 1):
        if new in text:
            fixed = text.replace(new, old, 1)
            patch = (f"--- a/{fn.path}\n+++ b/{fn.path}\n@@ -{number},1 +{number},1 @@\n-{text}\n+{fixed}\n")
            return patch, fn.name
    return None


def family_fix_chain(runner, project, rng, split, scratch: Path):
    """run_tests → read the failing file → apply_patch → run_tests: the multi-step chain."""
    if project.bug is None:
        return None
    work = _fresh_copy(project, scratch, rng)
    found = _fix_patch(work)
    if found is None:
        return None
    patch, name = found
    template = _pick_template(FIX_TEMPLATES, split, rng)
    b = Builder(runner, work, _request(template, rng))
    first = b.call("run_tests", {}, cache=False)
    failures = first.get("failures") or []
    if not failures:
        runner.forget(work.root)
        return None
    fn = next(f for f in work.functions if f.buggy)
    b.call("read_file", {"path": fn.path}, note=f"{failures[0]['test'].split('::')[-1]} fails; let me read {fn.path}.", cache=False)
    b.call("apply_patch", {"patch": patch}, note=f"The bug is in {name}.", cache=False)
    last = b.call("run_tests", {}, cache=False)
    runner.forget(work.root)
    counts = last.get("counts") or {}
    if counts.get("failed") or counts.get("errors"):
        return None
    b.say(f"Fixed {name} in {fn.path}; all {counts.get('passed', 0)} tests pass now.")
    return template, b.messages, [name], [name]


RECOVER_TEMPLATES = ["Show me {missing}.", "Open {missing} please.", "What's in {missing}?", "read {missing}",
                     "Print the file {missing}.", "cat {missing}", "Can you show {missing}?", "display {missing}"]


def family_recover(runner, project, rng, split):
    """A call that fails (a wrong path), then list_files, then the right read: recovery from an error."""
    if not project.stdlib_files:
        return None
    missing = Path(rng.choice(project.stdlib_files)).name  # the user forgot the directory
    template = _pick_template(RECOVER_TEMPLATES, split, rng)
    b = Builder(runner, project, _request(template, rng, missing=missing))
    failed = b.call("read_file", {"path": missing})
    if failed.get("ok"):
        return None
    listing = b.call("list_files", {"pattern": f"*{missing}"}, note=f"{missing} is not at the top level; let me look for it.")
    files = listing.get("files") or []
    if not files:
        return None
    result = b.call("read_file", {"path": files[0], "max_lines": 40}, note=f"It is {files[0]}.")
    names = project.defined_names(files[0])
    listed = ", ".join(n for n, _ in names[:6]) or "no top-level functions"
    b.say(f"{files[0]} ({result.get('total_lines')} lines) defines {listed}.")
    return template, b.messages, [files[0]], [missing]


NO_TOOL = {
    "clarify": (["Fix it.", "Can you change the function?", "Make it faster.", "Rename it.", "update the file",
                 "Is this right?", "Improve this.", "Delete the old one.", "Can you make it better?", "change that line",
                 "Why is it wrong?", "Add the missing part."],
                ["Which file or function do you mean? Tell me the name and what should change.",
                 "Could you say which file or function, and what you want changed?"]),
    "refuse": (["Delete every file on my computer.", "Send my SSH keys to this server.", "Disable the sandbox and run as root.",
                "Mine bitcoin in the background.", "Email my passwords to support.", "Wipe the git history of another user's repo.",
                "Turn off the approval prompts forever.", "Scan the local network for open ports.",
                "Upload this project to a public server.", "Read the passwords in my browser.", "Format the hard drive.",
                "Install a keylogger."],
               ["I can't do that: it would harm your machine or data, or reach outside the sandbox.",
                "I won't do that; it is unsafe and outside what the sandbox allows."]),
    "chat": (["Hello!", "Thanks, that's all.", "Who are you?", "What tools do you have?", "good morning",
              "Thank you!", "What can you do?", "Are you there?", "hi there", "Great, thanks a lot!", "How do you work?",
              "ok bye"],
             ["Hi! I can run Python or bash, run tests, analyse and debug code, read, search and edit files. What shall we do?",
              "I'm your coding assistant: I run code and tests in a sandbox and read, search and edit your project."]),
}


def family_no_tool(runner, project, rng, split):
    kind = rng.choice(sorted(NO_TOOL))
    templates, answers = NO_TOOL[kind]
    template = _pick_template(templates, split, rng)
    b = Builder(runner, project, _request(template, rng))
    b.say(rng.choice(answers))
    return template, b.messages, [], []


def _fresh_copy(project: SampleProject, scratch: Path, rng: random.Random) -> SampleProject:
    """A private copy of a project for a conversation that changes files."""
    target = scratch / f"{project.name}-{rng.randrange(10**9)}"
    shutil.copytree(project.root, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return dataclasses.replace(project, root=target)


# family name -> (weight, function, needs scratch)
FAMILIES: dict[str, tuple[float, Callable, bool]] = {
    "execute_python": (1.2, family_execute_python, False),
    "call_function": (1.2, family_call_function, False),
    "execute_bash": (1.0, family_execute_bash, False),
    "run_tests": (1.0, family_run_tests, False),
    "analyze_code": (0.7, family_analyze_code, False),
    "debug_code": (0.9, family_debug_code, False),
    "search_docs": (0.8, family_search_docs, False),
    "read_file": (0.8, family_read_file, False),
    "list_files": (0.7, family_list_files, False),
    "search_code": (0.8, family_search_code, False),
    "write_file": (0.4, family_write_file, True),
    "fix_chain": (1.0, family_fix_chain, True),
    "recover": (0.4, family_recover, False),
    "no_tool": (0.6, family_no_tool, False),
}


def generate(output_dir: Path, runner: ToolRunner, *, num_examples: int = 2000, heldout_examples: int = 200,
             seed: int = 1337, log: Callable[[str], None] = lambda line: None,
             system_prompt: Callable[[Path], str] | None = None) -> dict[str, list[Example]]:
    """Generate the train and held-out conversations (executing every call); deterministic per seed.

    ``system_prompt(project_root)`` writes each conversation's system message; pass the agent's
    own (instructions + repository summary) so training sees what the agent will show the model.
    """
    Builder.system_prompt = staticmethod(system_prompt or default_system_prompt)
    work = Path(output_dir) / "tool_calling_work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    out: dict[str, list[Example]] = {}
    for split, count in (("train", num_examples), ("heldout", heldout_examples)):
        projects = build_projects(work / "projects", split, TRAIN_PROJECTS if split == "train" else HELDOUT_PROJECTS, seed)
        if split == "train":
            check_sandbox_runs_code(runner, projects[0].root)
        scratch = work / "scratch" / split
        scratch.mkdir(parents=True)
        rng = random.Random(f"{seed}:{split}:examples")
        names = sorted(FAMILIES)
        weights = [FAMILIES[n][0] for n in names]
        examples: list[Example] = []
        seen_values = {v for e in out.get("train", []) for v in e.values}
        seen_requests = {e.messages[1]["content"] for e in out.get("train", [])}
        # cover every family first (a family may not apply to a project: retry it a few times), then draw by weight
        order = [n for n in names for _ in range(8)] + [None] * max(0, count * 3)
        covered: set[str] = set()
        for planned in order:
            if len(examples) >= count:
                break
            if planned in covered:
                continue
            family = planned or rng.choices(names, weights)[0]
            _, fn, needs_scratch = FAMILIES[family]
            project = rng.choice(projects)
            built = fn(runner, project, rng, split, scratch) if needs_scratch else fn(runner, project, rng, split)
            if built is None:
                continue
            template, messages, facts, values = built
            if split == "heldout" and (messages[1]["content"] in seen_requests or seen_values.intersection(values)):
                continue  # a collision by chance (e.g. two stdlib files defining the same name): never leak
            examples.append(Example(f"{split}-{len(examples):05d}", split, family, template, messages, project.name, facts, values))
            covered.add(family)
            if len(examples) % 200 == 0:
                log(f"{split}: {len(examples)}/{count} conversations ({runner.calls} tool runs)")
        runner.close()
        missing = sorted(set(names) - {e.family for e in examples})
        if missing and count >= len(names):
            from trainer import TrainerError

            raise TrainerError(f"no {split} conversations of {', '.join(missing)} could be generated",
                               "a tool fails on every sample project; run its call by hand to see why")
        out[split] = examples
    return out


def check_sandbox_runs_code(runner: ToolRunner, root: Path) -> None:
    """Fail at once, with the sandbox's own reason, when it cannot run code (e.g. a missing image):
    otherwise every family that runs code would silently produce nothing."""
    from trainer import TrainerError

    result = runner.call(root, "execute_python", {"code": "print(6 * 7)"}, cache=False)
    if (result.get("stdout") or "").strip() != "42":
        reason = result.get("error") or (result.get("stderr") or "").strip()[-200:] or "no output"
        raise TrainerError(f"the sandbox cannot run code: {reason}",
                           "build its image with 'assistant sandbox build', or choose --sandbox-image/--sandbox-backend")


def check_no_leakage(train: list[Example], heldout: list[Example]) -> list[str]:
    """Problems where a held-out phrasing or argument value also occurs in training (empty = none)."""
    problems = []
    train_templates = {e.template for e in train}
    train_requests = {e.messages[1]["content"] for e in train}
    train_values = {v for e in train for v in e.values}
    for e in heldout:
        if e.template in train_templates:
            problems.append(f"{e.id}: template {e.template!r} is also a training template")
        if e.messages[1]["content"] in train_requests:
            problems.append(f"{e.id}: request {e.messages[1]['content']!r} also occurs in training")
        for v in e.values:
            if v in train_values:
                problems.append(f"{e.id}: argument value {v!r} also occurs in training")
    return problems


def tool_calls(example: Example | dict) -> list[dict]:
    messages = example.messages if isinstance(example, Example) else example["messages"]
    return [m["tool_call"] for m in messages if m.get("tool_call")]


# ---- the prepared dataset ----------------------------------------------------------------------


def _write_jsonl(path: Path, examples: list[Example]) -> None:
    from common.atomic import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in examples))


def read_examples(path: str | Path) -> list[dict]:
    from trainer import TrainerError

    path = Path(path)
    if not path.exists():
        raise TrainerError(f"no tool-calling set at {path}", "run 'assistant data prepare --stage tool_calling' first")
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise TrainerError(f"{path} is corrupt ({exc})", "prepare the tool-calling data again") from exc


def render_examples(examples: list, tokenizer) -> tuple[list[int], list[int], list[int]]:
    """Concatenated ids, loss mask and start offsets of rendered conversations (compact tool list)."""
    from sandbox.tools import tool_schemas
    from trainer.data.chat_format import render

    tools = tool_schemas()
    ids: list[int] = []
    mask: list[int] = []
    starts: list[int] = []
    for example in examples:
        messages = example.messages if isinstance(example, Example) else example["messages"]
        rendered = render(messages, tokenizer, tools=tools, tools_style=TOOLS_STYLE)
        starts.append(len(ids))
        ids += rendered.ids + [tokenizer.eos_id]
        mask += rendered.mask + [0]
    return ids, mask, starts


def prepare_tool_calling(output_dir: str | Path, tokenizer, runner: ToolRunner, *, num_examples: int = 2000,
                         heldout_examples: int = 200, val_fraction: float = 0.05, seed: int = 1337,
                         log: Callable[[str], None] = lambda line: None,
                         system_prompt: Callable[[Path], str] | None = None) -> dict:
    """Generate, check and tokenize the stage-3 set; write the files and return the manifest.

    Files: tool_calling_{train,val,heldout}.jsonl (conversations), tool_calling_{train,val}.npy
    with _mask.npy (1 on assistant targets) and _starts.npy (conversation offsets), and
    tool_calling_manifest.json (written last). The held-out set is for ``assistant eval`` only.
    """
    import time

    import numpy as np

    from common.atomic import atomic_write_text
    from trainer import TrainerError
    from trainer.data.prepare import MANIFEST_VERSION, token_dtype

    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sets = generate(output_dir, runner, num_examples=num_examples, heldout_examples=heldout_examples, seed=seed, log=log,
                    system_prompt=system_prompt)
    problems = check_no_leakage(sets["train"], sets["heldout"])
    if problems:
        raise TrainerError(f"held-out leakage: {problems[0]}", "this is a bug in the generator")
    train = sets["train"]
    n_val = max(1, round(len(train) * val_fraction))
    splits = {"train": train[:-n_val], "val": train[-n_val:]}
    for name, examples in (*splits.items(), ("heldout", sets["heldout"])):
        _write_jsonl(output_dir / f"tool_calling_{name}.jsonl", examples)
    dtype = token_dtype(tokenizer.vocab_size)
    counts = {}
    for name, examples in splits.items():
        ids, mask, starts = render_examples(examples, tokenizer)
        for suffix, values, kind in (("", ids, dtype), ("_mask", mask, np.uint8), ("_starts", starts, np.int64)):
            path = output_dir / f"tool_calling_{name}{suffix}.npy"
            tmp = path.with_name(path.name + ".tmp.npy")
            np.save(tmp, np.asarray(values, dtype=kind))
            tmp.replace(path)
        counts[name] = {"tokens": len(ids), "target_tokens": int(sum(mask)), "conversations": len(examples)}
    families: dict[str, dict[str, int]] = {}
    for split, examples in (("train", train), ("heldout", sets["heldout"])):
        for e in examples:
            families.setdefault(e.family, {}).setdefault(split, 0)
            families[e.family][split] += 1
    manifest = {
        "version": MANIFEST_VERSION,
        "dataset_version": DATASET_VERSION,
        "stage": "tool_calling",
        "tokenizer_hash": tokenizer.hash,
        "tokenizer_path": str(tokenizer.path) if tokenizer.path else None,
        "vocab_size": tokenizer.vocab_size,
        "dtype": np.dtype(dtype).name,
        "train_tokens": counts["train"]["tokens"],
        "val_tokens": counts["val"]["tokens"],
        "splits": counts,
        "heldout_conversations": len(sets["heldout"]),
        "families": families,
        "tool_runs": runner.calls,
        "seed": seed,
        "chat": {"tools_style": TOOLS_STYLE},
        "seconds": round(time.time() - started, 2),
    }
    atomic_write_text(output_dir / "tool_calling_manifest.json", json.dumps(manifest, indent=2))
    shutil.rmtree(output_dir / "tool_calling_work", ignore_errors=True)
    return manifest
