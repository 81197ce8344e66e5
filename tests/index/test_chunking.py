"""The chunker: syntax units, headers, nothing lost, nothing past the embedder's window."""

from __future__ import annotations

import ast
import itertools
import sysconfig
import textwrap
from pathlib import Path

import pytest

from index.chunking import TokenCounter, available_grammars, chunk_source
from index.embedding import default_model_path

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    """The real embedder tokenizer, so window limits are exact."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return TokenCounter(tokenizer, 256)


def _stdlib_files():
    return sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "http").glob("*.py")) + \
        [STDLIB / "argparse.py", STDLIB / "textwrap.py"]


def _functions(tree):
    """(qualname, node) of every function that is not nested inside another function."""
    out = []

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{prefix}{node.name}", node))
            elif isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            else:
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        visit(inner, prefix)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, prefix)

    visit(tree.body, "")
    return out


def test_python_chunks_parse_and_cover_every_function_once(counter):
    fragments = total = 0
    for path in _stdlib_files():
        source = path.read_text(encoding="utf-8")
        rel = path.relative_to(STDLIB).as_posix()
        chunks = chunk_source(rel, source, "python", counter)
        lines = source.split("\n")
        covered = [0] * (len(lines) + 1)
        for chunk in chunks:
            total += 1
            assert chunk.text.startswith(f"# {rel}")
            if chunk.symbol:
                assert chunk.text.split("\n", 1)[0].startswith(f"# {rel}::{chunk.symbol}")
            # every chunk fits the embedder's window, header and [CLS]/[SEP] included
            assert counter.count(chunk.text) + 2 <= 256, (rel, chunk.symbol)
            for line in range(chunk.start_line, chunk.end_line + 1):
                covered[line] += 1
            if chunk.kind == "fragment":
                fragments += 1  # a piece of one oversized statement: statement-aligned, may not parse
                continue
            ast.parse(textwrap.dedent(chunk.code))  # raises if a syntax unit was cut
        # no line is in two chunks, no code line is lost
        assert max(covered) == 1, rel
        for number, line in enumerate(lines, start=1):
            if line.strip():
                assert covered[number] == 1, f"{rel}:{number} not in any chunk"
        # every function (methods too) lives in exactly one chunk, or in consecutive parts of one symbol
        for qualname, node in _functions(ast.parse(source)):
            owners = {c.id for c in chunks if c.start_line <= node.lineno <= c.end_line}
            assert len(owners) == 1, (rel, qualname)
            mine = [c for c in chunks if c.symbol == qualname]
            if mine:  # it has its own chunk(s): together they cover exactly its lines
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                span = sorted((c.start_line, c.end_line) for c in mine)
                assert span[0][0] <= start and span[-1][1] >= node.end_lineno
    # A piece of a statement too long for the window (a 60-line docstring, a 200-line if/elif ladder)
    # is cut at inner statement boundaries and carries the headers that open it, so most such pieces
    # parse too; the rest are 'fragment' chunks (measured here: 102 of 810, about half of them pieces
    # of long docstrings, in the stdlib's longest functions).
    assert fragments / total < 0.15


def test_long_function_is_split_with_its_signature_repeated(counter):
    body = "\n".join(f"    value_{i} = compute_something(value_{i - 1}, {i})  # step {i}" for i in range(1, 120))
    source = f"def very_long_function(value_0):\n{body}\n    return value_119\n"
    chunks = chunk_source("long.py", source, "python", counter)
    parts = [c for c in chunks if c.symbol == "very_long_function"]
    assert len(parts) >= 3
    assert parts[0].text.startswith("# long.py::very_long_function\n")
    assert parts[1].text.startswith("# long.py::very_long_function (part 2)\ndef very_long_function(value_0):")
    assert all(counter.count(c.text) + 2 <= 256 for c in parts)
    assert parts[-1].text.rstrip().endswith("return value_119")  # nothing fell off the end
    assert sum(c.end_line - c.start_line + 1 for c in parts) == len(source.strip().split("\n"))


def test_decorators_and_signature_stay_with_the_function(counter):
    source = "import functools\n\n\n@functools.lru_cache(maxsize=None)\ndef cached(x: int) -> int:\n    return x\n"
    chunk = next(c for c in chunk_source("d.py", source, "python", counter) if c.symbol == "cached")
    assert chunk.code.startswith("@functools.lru_cache(maxsize=None)\ndef cached(x: int) -> int:")
    assert (chunk.start_line, chunk.end_line) == (4, 6)


def test_unchanged_functions_keep_their_ids_when_others_change(counter):
    source = "def a():\n    return 1\n\n\ndef b():\n    return 2\n"
    before = {c.symbol: c.id for c in chunk_source("m.py", source, "python", counter)}
    after = {c.symbol: c.id for c in chunk_source("m.py", source.replace("return 2", "return 3"), "python", counter)}
    assert before["a"] == after["a"] and before["b"] != after["b"]


@pytest.mark.parametrize("language,rel,source,symbols", [
    ("javascript", "app.js", ("function renderList(items) {\n  return items.join(',');\n}\n\n"
                              "const add = (a, b) => a + b;\n"), {"renderList", "add"}),
    ("go", "main.go", ("package main\n\ntype Server struct{ port int }\n\n"
                       "func (s *Server) Start() error {\n\treturn nil\n}\n\nfunc main() {}\n"),
     {"Server", "Server.Start", "main"}),
    ("rust", "lib.rs", ("struct Point { x: i32 }\n\nimpl Point {\n    fn norm(&self) -> i32 { self.x }\n}\n"
                        "\nfn helper() -> i32 { 1 }\n"), {"Point", "helper"}),
    ("bash", "deploy.sh", "#!/bin/bash\ndeploy() {\n  echo hi\n}\ndeploy\n", {"deploy"}),
    ("java", "A.java", "class A {\n  int f() { return 1; }\n}\n", {"A"}),
])
def test_tree_sitter_languages_chunk_by_definition(counter, language, rel, source, symbols):
    assert language in available_grammars()
    chunks = chunk_source(rel, source, language, counter)
    assert symbols <= {c.symbol for c in chunks}
    assert all(c.text.startswith(f"# {rel}") for c in chunks)


def test_big_class_in_tree_sitter_language_splits_into_methods(counter):
    methods = "\n".join(f"  method{i}(x) {{\n    return x * {i} + compute(x, {i}, 'padding text here');\n  }}"
                        for i in range(40))
    source = f"class Big {{\n{methods}\n}}\n"
    chunks = chunk_source("big.js", source, "javascript", counter)
    assert {f"Big.method{i}" for i in range(40)} <= {c.symbol for c in chunks}


def test_unknown_language_uses_overlapping_line_windows(counter):
    source = "\n".join(f"line {i} with some words in it to fill the window up nicely" for i in range(200))
    chunks = chunk_source("notes.txt", source, "text", counter)
    assert len(chunks) > 2
    assert all(c.kind == "window" for c in chunks)
    # consecutive windows overlap, and together they reach the last line
    assert all(b.start_line <= a.end_line for a, b in itertools.pairwise(chunks))
    assert chunks[-1].end_line == 200


def test_syntax_error_falls_back_to_windows(counter):
    chunks = chunk_source("broken.py", "def f(:\n    pass\n", "python", counter)
    assert [c.kind for c in chunks] == ["window"]


def test_markdown_sections_are_chunks_named_by_heading(counter):
    chunks = chunk_source("README.md", "# Title\n\nIntro.\n\n## Install\n\nRun make.\n", "markdown", counter)
    assert [c.symbol for c in chunks] == ["Title", "Install"]


def test_empty_file_has_no_chunks(counter):
    assert chunk_source("empty.py", "\n\n", "python", counter) == []
