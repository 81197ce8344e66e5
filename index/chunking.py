"""Syntax-aware chunking: one chunk per function, method or small class, module code in between.

Python is read with ``ast``; other languages with the tree-sitter grammar wheels that are installed
(``tree-sitter-javascript``, ``-go``, ``-rust``...); anything else becomes line windows with overlap.
Every chunk's text starts with ``# path::Qualified.name`` (it lifts recall, see docs/PERFORMANCE.md),
and a unit longer than the embedder's window is split at statement boundaries, each later part
repeating the signature, so nothing falls off the end of the window.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib
import re
import textwrap
from collections.abc import Sequence

CHUNKER_VERSION = 1
# Special tokens ([CLS], [SEP]) the embedder adds around every text.
SPECIAL_TOKENS = 2
WINDOW_OVERLAP = 0.15


@dataclasses.dataclass(frozen=True)
class Chunk:
    id: str
    path: str
    language: str
    symbol: str        # qualified name ("Class.method"); "" for module-level code
    kind: str          # function | class | module | section | window | fragment
    start_line: int    # 1-based, inclusive
    end_line: int
    text: str          # what is embedded and searched: header line + code
    hash: str

    @property
    def code(self) -> str:
        """The text without its header line."""
        return self.text.split("\n", 1)[1] if "\n" in self.text else ""


class TokenCounter:
    """Counts embedder tokens per line, so chunks fit the embedder's window.

    With a ``tokenizers.Tokenizer`` the counts are exact (word pieces never span a line break);
    without one, a conservative estimate of one token per three characters is used.
    """

    def __init__(self, tokenizer=None, max_tokens: int = 256) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def line_costs(self, lines: Sequence[str]) -> list[int]:
        if not lines:
            return []
        if self.tokenizer is None:
            return [len(line) // 3 + 1 for line in lines]
        encodings = self.tokenizer.encode_batch(list(lines), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def count(self, text: str) -> int:
        return sum(self.line_costs(text.split("\n")))


@dataclasses.dataclass
class _Unit:
    symbol: str
    kind: str
    start: int                      # 0-based line index, inclusive
    end: int                        # 0-based, exclusive
    cuts: list[int] = dataclasses.field(default_factory=list)  # clean split points (line indexes)
    deep_cuts: list[int] = dataclasses.field(default_factory=list)  # inside nested blocks: last resort
    signature: tuple[int, int] | None = None   # lines repeated at the top of later parts
    context: object = None   # Python: line -> enclosing block headers, so a part cut inside a block parses


def chunk_source(rel: str, source: str, language: str, counter: TokenCounter) -> list[Chunk]:
    """Split one file's text into chunks (ids are stable for unchanged content)."""
    lines = source.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        return []
    costs = counter.line_costs(lines)
    limit = counter.max_tokens - SPECIAL_TOKENS - counter.count(f"# {rel}::") - 8

    def fits(start: int, end: int) -> bool:
        return sum(costs[start:end]) <= limit

    units: list[_Unit] | None = None
    if language == "python":
        units = _python_units(source, lines)
    elif language == "markdown":
        units = _markdown_units(lines)
    elif language in _TS_LANGUAGES:
        units = _treesitter_units(source, lines, language, fits)
    if units is None:  # unknown language or a file that does not parse
        units = [_Unit("", "window", 0, len(lines))]
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for unit in units:
        for part_index, (symbol, kind, start, end, prefix) in enumerate(_fit(unit, lines, costs, counter, rel)):
            header = f"# {rel}::{symbol}" if symbol else f"# {rel}"
            if part_index:
                header += f" (part {part_index + 1})"
            body = "\n".join(prefix + lines[start:end])
            text = f"{header}\n{body}"
            digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
            n = seen.get(digest, 0)
            seen[digest] = n + 1
            chunk_id = hashlib.sha1(f"{digest}:{n}".encode()).hexdigest()[:24]
            chunks.append(Chunk(chunk_id, rel, language, symbol, kind, start + 1, end, text, digest[:16]))
    return chunks


def _fit(unit: _Unit, lines, costs, counter: TokenCounter, rel: str):
    """Yield (symbol, kind, start, end, prefix_lines) parts of ``unit`` that each fit the window."""
    header_cost = counter.count(f"# {rel}::{unit.symbol} (part 9)") + SPECIAL_TOKENS
    budget = max(16, counter.max_tokens - header_cost)
    start, end = unit.start, unit.end
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start >= end:
        return
    if sum(costs[start:end]) <= budget:
        yield unit.symbol, unit.kind, start, end, []
        return
    prefix: list[str] = []
    prefix_cost = 0
    if unit.signature:
        s0, s1 = unit.signature
        prefix = lines[s0:s1]
        prefix_cost = sum(costs[s0:s1])
        if prefix_cost > budget // 2:  # a giant signature: later parts go without it
            prefix, prefix_cost = [], 0
    if unit.kind == "window":  # plain text: line windows with overlap
        yield from _windows(unit, lines, costs, start, end, budget)
        return
    clean = {c for c in unit.cuts if start < c < end} | {start, end}
    cuts = sorted(clean | {c for c in unit.deep_cuts if start < c < end})
    part_start = start
    first = True
    while part_start < end:
        head = [] if first else prefix
        head_cost = 0 if first else prefix_cost
        # a part starting inside a nested block carries the headers that open it
        context = [] if part_start in clean else _context_text(unit, part_start)
        context_cost = sum(counter.line_costs(context))
        if context_cost > (budget - head_cost) // 2:
            context, context_cost = [], 0
        room = budget - head_cost - context_cost
        # greedy: the furthest cut that still fits, preferring clean (statement-level) cuts, then
        # cuts that leave a part that parses (not ending between ``try:`` and its ``except``)
        fitting = []
        total, last = 0, part_start
        for cut in cuts:
            if cut <= part_start:
                continue
            total += sum(costs[last:cut])
            last = cut
            if total > room:
                break
            fitting.append(cut)
        best = fitting[-1] if fitting else None
        clean_fits = [c for c in fitting if c in clean]
        if clean_fits and (clean_fits[-1] - part_start) * 2 >= (best - part_start):
            best = clean_fits[-1]
        elif best is not None and not (part_start in clean and best in clean):
            text_head = head + context
            for cut in reversed(fitting):
                if (cut - part_start) * 3 < (fitting[-1] - part_start):
                    break
                if _parses(text_head + lines[part_start:cut]):
                    best = cut
                    break
        if best is None:  # one line-run alone is too long: line windows over it
            stop = next(c for c in cuts if c > part_start)
            for w_start, w_end in _window_ranges(costs, part_start, stop, budget - prefix_cost, overlap=0):
                yield unit.symbol, "fragment", w_start, w_end, head
                first = False
                head = prefix
            part_start = stop
            continue
        head = head + context
        kind = unit.kind
        if not (part_start in clean and best in clean) and not _parses(head + lines[part_start:best]):
            kind = "fragment"  # e.g. it starts inside an ``else:`` block
        yield unit.symbol, kind, part_start, best, head
        first = False
        part_start = best


def _context_text(unit: _Unit, line: int) -> list[str]:
    """The block headers (``for x in y:``, ``if z:``, ``else:``...) that open ``line`` inside ``unit``."""
    if unit.context is None:
        return []
    # only headers inside the unit (a function's own ``def`` is its repeated signature already)
    body_start = unit.signature[1] if unit.signature else unit.start
    return [text for start, header in unit.context(line) if start >= body_start for text in header]


def _parses(text_lines: list[str]) -> bool:
    try:
        ast.parse(textwrap.dedent("\n".join(text_lines)))
    except (SyntaxError, ValueError):
        return False
    return True


def _window_ranges(costs, start: int, end: int, budget: int, overlap: float = WINDOW_OVERLAP):
    """Greedy line windows of at most ``budget`` tokens; a line longer than that is its own window."""
    position = start
    while position < end:
        total, stop = 0, position
        while stop < end and (total + costs[stop] <= budget or stop == position):
            total += costs[stop]
            stop += 1
        yield position, stop
        if stop >= end:
            return
        back, carried = stop, 0
        while overlap and back > position + 1 and carried + costs[back - 1] <= budget * overlap:
            back -= 1
            carried += costs[back]
        position = back


def _windows(unit: _Unit, lines, costs, start, end, budget):
    for w_start, w_end in _window_ranges(costs, start, end, budget):
        if any(line.strip() for line in lines[w_start:w_end]):
            yield unit.symbol, unit.kind, w_start, w_end, []


# ----------------------------------------------------------------------------------------- Python

def _python_units(source: str, lines: list[str]) -> list[_Unit] | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    units: list[_Unit] = []
    _python_block(tree.body, "", 0, len(lines), lines, units, "module")
    units.sort(key=lambda u: u.start)
    chains = _block_headers(tree, lines)
    for unit in units:
        unit.context = lambda line: chains.get(line, ())
    return units


def _block_headers(tree, lines) -> dict[int, tuple]:
    """For each line inside a block, the header texts that open it, outermost first: ``def f():``,
    ``for x in y:``, ``if z:`` ... A clause (``else:``, ``elif``, ``except``, ``finally:``) is opened by
    its statement's header, an elided ``...`` body and the clause line, so a part that starts inside
    it still reads (and parses) as the code it is."""
    chains: dict[int, tuple] = {}

    def text(a: int, b: int) -> list[str]:
        return lines[a:b]

    def elided(block) -> str:
        first = lines[_stmt_start(block[0])]
        return first[: len(first) - len(first.lstrip())] + "..."

    def clause_line(block, word: str) -> int | None:
        above = _stmt_start(block[0]) - 1
        while above > 0 and not lines[above].strip():
            above -= 1
        return above if re.match(rf"\s*{word}\b", lines[above]) else None

    def blocks(node, lead: list[str] | None = None):
        """(header text, block) pairs of a compound statement; ``lead`` opens an ``elif``."""
        body = getattr(node, "body", None)
        if not (isinstance(body, list) and body and isinstance(body[0], ast.stmt)):
            return
        start = node.lineno - 1 if hasattr(node, "decorator_list") else _stmt_start(node)
        head = (lead or []) + text(start, _stmt_start(body[0]))
        yield start, head, body
        opened = head + [elided(body)]
        handlers = getattr(node, "handlers", [])
        for handler in handlers:
            yield start, opened + text(handler.lineno - 1, _stmt_start(handler.body[0])), handler.body
        for case in getattr(node, "cases", []):
            yield start, text(start, start + 1) + text(case.pattern.lineno - 1, _stmt_start(case.body[0])), case.body
        orelse = getattr(node, "orelse", None)
        if isinstance(orelse, list) and orelse and isinstance(orelse[0], ast.stmt):
            first = orelse[0]
            if isinstance(node, ast.If) and isinstance(first, ast.If) and len(orelse) == 1 \
                    and lines[first.lineno - 1].lstrip().startswith("elif"):
                # an elif ladder: ``if a: ... / elif b:`` opens b's body
                elif_lead = (lead or []) + text(start, _stmt_start(body[0])) + [elided(body)]
                for _, header, block in blocks(first, lead=elif_lead):
                    yield start, header, block
                return
            line = clause_line(orelse, "else")
            if line is not None:
                before = opened
                if handlers:
                    last = handlers[-1]
                    before = opened + text(last.lineno - 1, _stmt_start(last.body[0])) + [elided(last.body)]
                yield start, before + [lines[line]], orelse
        finalbody = getattr(node, "finalbody", None)
        if isinstance(finalbody, list) and finalbody:
            line = clause_line(finalbody, "finally")
            if line is not None:
                yield start, opened + [lines[line]], finalbody

    def visit(node, chain):
        for start, header, block in blocks(node):
            inner = chain + ((start, tuple(header)),)
            for line in range(_stmt_start(block[0]), block[-1].end_lineno):
                chains[line] = inner
            for child in block:
                visit(child, inner)

    for top in tree.body:
        visit(top, ())
    return chains


def _stmt_start(node: ast.stmt) -> int:
    """0-based first line of a statement, decorators included."""
    decorators = getattr(node, "decorator_list", None) or []
    return min([d.lineno for d in decorators] + [node.lineno]) - 1


def _python_block(body, qual: str, start: int, end: int, lines, units: list[_Unit], kind: str) -> None:
    """Units for the definitions in ``body``; the rest of [start, end) becomes ``kind`` segments."""
    members: list[tuple[_Unit, ast.stmt]] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{qual}.{node.name}" if qual else node.name
            s = _with_leading_comments(_stmt_start(node), lines, start)
            kind_of = "class" if isinstance(node, ast.ClassDef) else "function"
            member = _Unit(name, kind_of, s, node.end_lineno, signature=(node.lineno - 1, _stmt_start(node.body[0])))
            member.cuts = _stmt_cuts(node.body, member.end)
            member.deep_cuts = _deep_cuts(node.body, lines)
            members.append((member, node))
    for member, node in members:
        has_defs = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in node.body)
        if member.kind == "function" or not has_defs:
            units.append(member)
            continue
        # a class with methods: each method is its own chunk (a whole class dilutes each method's vector)
        inner: list[_Unit] = []
        _python_block(node.body, member.symbol, member.start, member.end, lines, inner, "class")
        units.extend(inner)
    # the code between definitions, cut only at statement boundaries so every piece parses
    covered = sorted((m.start, m.end) for m, _ in members)
    gaps, position = [], start
    for s, e in covered:
        if s > position:
            gaps.append((position, s))
        position = max(position, e)
    if position < end:
        gaps.append((position, end))
    cut_points = set(_stmt_cuts(body, end))
    deep = _deep_cuts([n for n in body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                 ast.ClassDef))], lines)
    for s, e in gaps:
        if not any(line.strip() for line in lines[s:e]):
            continue
        segment = _Unit(qual, kind, s, e, cuts=[c for c in cut_points if s < c < e],
                        deep_cuts=[c for c in deep if s < c < e])
        units.append(segment)
    if kind == "class":
        _attach_class_header(qual, start, units, lines)


def _attach_class_header(qual: str, class_start: int, units: list[_Unit], lines) -> None:
    """A split class whose header segment holds no statement: fold the header into the first member."""
    own = [u for u in units if u.start >= class_start]
    if not own:
        return
    own.sort(key=lambda u: u.start)
    head = next((u for u in own if u.start == class_start and u.symbol == qual and u.kind == "class"), None)
    if head is not None and _segment_has_code(lines[head.start:head.end]):
        return
    if head is not None:
        units.remove(head)
        own.remove(head)
    first = own[0]
    header_end = first.start
    first.start = class_start
    if first.signature is not None:
        first.cuts = [c for c in first.cuts if c > header_end]


def _segment_has_code(seg_lines: list[str]) -> bool:
    """Whether a class header segment has a statement besides ``class X:`` (and comments/decorators)."""
    body = seg_lines
    # skip decorators and the (possibly multi-line) class statement: up to the line ending with ':'
    index = 0
    while index < len(body) and not re.match(r"\s*class\b", body[index]):
        index += 1
    while index < len(body) and not body[index].rstrip().endswith(":"):
        index += 1
    rest = body[index + 1:]
    return any(line.strip() and not line.strip().startswith("#") for line in rest)


def _with_leading_comments(start: int, lines, floor: int) -> int:
    """Extend a definition upwards over the comment lines directly above it."""
    while start - 1 >= floor and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def _stmt_cuts(body, end: int, first: bool = False) -> list[int]:
    """Statement starts of one block (``first``: also before its first statement, e.g. a long docstring)."""
    return sorted({_stmt_start(node) for node in (body if first else body[1:])} | {end})


def _deep_cuts(body, lines) -> list[int]:
    """Statement starts inside nested blocks: split points for a single oversized statement.

    Never a clause line (``elif``/``else``/``except``/``finally``: a part cannot start there) nor a
    docstring's start (a class line alone is no use)."""
    cuts: set[int] = set()
    for index, node in enumerate(body):
        start = _stmt_start(node)
        is_docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not is_docstring and not re.match(r"\s*(elif|else|except|finally)\b", lines[start]):
            cuts.add(start)
        blocks = [getattr(node, field, None) for field in ("body", "orelse", "finalbody")]
        blocks += [h.body for h in getattr(node, "handlers", [])]
        blocks += [c.body for c in getattr(node, "cases", [])]
        for block in blocks:
            if block and isinstance(block, list) and isinstance(block[0], ast.stmt):
                cuts |= set(_deep_cuts(block, lines))
    return sorted(cuts)


# --------------------------------------------------------------------------------------- Markdown

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _markdown_units(lines: list[str]) -> list[_Unit]:
    units: list[_Unit] = []
    fenced = False
    title, start = "", 0
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match and index > start:
            units.append(_Unit(title, "window", start, index))
        if match:
            title, start = match.group(2), index
    units.append(_Unit(title, "window", start, len(lines)))
    return [u for u in units if u.end > u.start]


# ------------------------------------------------------------------------------------ tree-sitter

@dataclasses.dataclass(frozen=True)
class _Grammar:
    module: str
    function: str = "language"
    definitions: frozenset = frozenset()   # nodes that become one chunk
    containers: frozenset = frozenset()    # nodes whose members become chunks when they are large
    wrappers: frozenset = frozenset()      # nodes to look through (export statements, templates)


_TS_LANGUAGES = {
    "javascript": _Grammar(
        "tree_sitter_javascript",
        definitions=frozenset({"function_declaration", "generator_function_declaration", "method_definition",
                               "lexical_declaration", "variable_declaration"}),
        containers=frozenset({"class_declaration", "class"}),
        wrappers=frozenset({"export_statement"}),
    ),
    "bash": _Grammar("tree_sitter_bash", definitions=frozenset({"function_definition"})),
    "go": _Grammar(
        "tree_sitter_go",
        definitions=frozenset({"function_declaration", "method_declaration", "type_declaration"}),
    ),
    "rust": _Grammar(
        "tree_sitter_rust",
        definitions=frozenset({"function_item", "struct_item", "enum_item", "type_item", "const_item",
                               "static_item", "macro_definition", "function_signature_item"}),
        containers=frozenset({"impl_item", "trait_item", "mod_item"}),
    ),
    "java": _Grammar(
        "tree_sitter_java",
        definitions=frozenset({"method_declaration", "constructor_declaration", "field_declaration"}),
        containers=frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                              "record_declaration"}),
    ),
    "c": _Grammar(
        "tree_sitter_c",
        definitions=frozenset({"function_definition", "struct_specifier", "enum_specifier", "type_definition"}),
    ),
    "cpp": _Grammar(
        "tree_sitter_cpp",
        definitions=frozenset({"function_definition", "enum_specifier", "type_definition",
                               "field_declaration"}),
        containers=frozenset({"class_specifier", "struct_specifier", "namespace_definition"}),
        wrappers=frozenset({"template_declaration"}),
    ),
    "ruby": _Grammar(
        "tree_sitter_ruby",
        definitions=frozenset({"method", "singleton_method"}),
        containers=frozenset({"class", "module"}),
    ),
}
_TS_LANGUAGES["typescript"] = dataclasses.replace(
    _TS_LANGUAGES["javascript"], module="tree_sitter_typescript", function="language_typescript",
    definitions=_TS_LANGUAGES["javascript"].definitions | {"interface_declaration", "type_alias_declaration",
                                                            "enum_declaration", "abstract_class_declaration",
                                                            "function_signature", "method_signature"},
    containers=_TS_LANGUAGES["javascript"].containers | {"abstract_class_declaration"},
)
_TS_LANGUAGES["tsx"] = dataclasses.replace(_TS_LANGUAGES["typescript"], function="language_tsx")


@functools.cache
def _parser(language: str):
    """A tree-sitter parser for ``language``, or None when its grammar wheel is not installed."""
    grammar = _TS_LANGUAGES[language]
    try:
        import tree_sitter

        module = importlib.import_module(grammar.module)
        return tree_sitter.Parser(tree_sitter.Language(getattr(module, grammar.function)()))
    except (ImportError, AttributeError, ValueError):
        return None


def available_grammars() -> list[str]:
    """Languages chunked by syntax here (Python always; others when their grammar wheel is installed)."""
    return ["python"] + sorted(lang for lang in _TS_LANGUAGES if _parser(lang) is not None)


def _node_name(node) -> str:
    name = node.child_by_field_name("name")
    if name is None and node.type in ("impl_item",):
        name = node.child_by_field_name("type")
    if name is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.type not in ("identifier", "field_identifier",
                                                                  "qualified_identifier", "type_identifier",
                                                                  "destructor_name", "operator_name"):
            inner = declarator.child_by_field_name("declarator") or declarator.child_by_field_name("name")
            if inner is None:
                break
            declarator = inner
        name = declarator
    if name is None and node.type in ("lexical_declaration", "variable_declaration"):
        for child in node.named_children:
            if child.type == "variable_declarator":
                name = child.child_by_field_name("name")
                break
    if name is None and node.type == "type_declaration":
        for child in node.named_children:
            if child.type == "type_spec":
                name = child.child_by_field_name("name")
                break
    text = name.text.decode("utf-8", "replace") if name is not None and name.text else ""
    if node.type == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        if receiver is not None and receiver.text:  # go: (s *Server) Name -> Server.Name
            kind = re.findall(r"[A-Za-z_]\w*", receiver.text.decode("utf-8", "replace"))
            if kind:
                text = f"{kind[-1]}.{text}"
    return text.split("\n", 1)[0][:120]


def _treesitter_units(source: str, lines: list[str], language: str, fits) -> list[_Unit] | None:
    parser = _parser(language)
    if parser is None:
        return None
    tree = parser.parse(source.encode("utf-8"))
    grammar = _TS_LANGUAGES[language]
    units: list[_Unit] = []
    _ts_block(tree.root_node.named_children, "", 0, len(lines), grammar, units, fits)
    units.sort(key=lambda u: u.start)
    return units


def _ts_block(children, qual: str, start: int, end: int, grammar: _Grammar, units: list[_Unit], fits) -> None:
    members: list[tuple[_Unit, object]] = []
    pending_comment = None
    for child in children:
        node = child
        while node.type in grammar.wrappers and node.named_children:
            inner = [c for c in node.named_children if c.type in grammar.definitions | grammar.containers]
            if not inner:
                break
            node = inner[0]
        if "comment" in child.type:
            pending_comment = pending_comment if pending_comment is not None else child
            continue
        if node.type in grammar.definitions | grammar.containers:
            if node.type in ("lexical_declaration", "variable_declaration") and not _declares_function(node):
                pending_comment = None
                continue
            name = _node_name(node)
            symbol = f"{qual}.{name}" if qual and name else (name or qual)
            s = child.start_point[0]
            if pending_comment is not None and child.start_point[0] - pending_comment.end_point[0] <= 1:
                s = pending_comment.start_point[0]
            e = child.end_point[0] + 1
            kind = "class" if node.type in grammar.containers else "function"
            body = node.child_by_field_name("body")
            signature = (child.start_point[0], child.start_point[0] + 1)
            cuts = []
            if body is not None:
                cuts = [c.start_point[0] for c in body.named_children if c.start_point[0] > s] + [e]
            members.append((_Unit(symbol, kind, max(s, start), min(e, end), cuts=cuts, signature=signature), node))
        pending_comment = None
    for unit, node in members:
        if unit.kind == "class" and not fits(unit.start, unit.end):
            body = node.child_by_field_name("body")
            if body is not None and body.named_children:
                _ts_block(body.named_children, unit.symbol, unit.start, unit.end, grammar, units, fits)
                continue
        units.append(unit)
    _fill_gaps(qual, start, end, [u for u, _ in members], units)


def _declares_function(node) -> bool:
    for child in node.named_children:
        if child.type == "variable_declarator":
            value = child.child_by_field_name("value")
            if value is not None and value.type in ("arrow_function", "function_expression", "function",
                                                    "class", "generator_function"):
                return True
    return False


def _fill_gaps(symbol: str, start: int, end: int, covered_units, units) -> None:
    """The lines between definitions become line-window units."""
    covered = sorted((u.start, u.end) for u in covered_units)
    position = start
    gaps = []
    for s, e in covered:
        if s > position:
            gaps.append((position, s))
        position = max(position, e)
    if position < end:
        gaps.append((position, end))
    for s, e in gaps:
        units.append(_Unit(symbol, "window", s, e))
