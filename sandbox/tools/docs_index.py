"""An offline index of Python documentation: the standard library's and installed packages'
docstrings, the text ``pydoc`` shows, ranked with BM25 (``bm25s``).

Pure-Python modules are read with ``ast`` (no import, so no side effects and no slow imports);
the standard library's compiled modules, which have no source, are imported and read with
``inspect``. The index is cached per interpreter and package set under
``$XDG_CACHE_HOME/assistant/docs/``; it is rebuilt when either changes.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT = 1
SKIP_DIRS = {"test", "tests", "testing", "idle_test", "__pycache__", "site-packages", "dist-packages",
             "idlelib", "turtledemo", "lib2to3", "ensurepip", "venv", "pydoc_data", "config-3"}  # fmt: skip
MAX_DOC = 2000
MAX_FILES_PER_PACKAGE = 600
STOPWORDS = set(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "if", "in", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "will", "with", "not", "no", "can", "may", "return", "returns", "value", "values"])  # fmt: skip


@dataclass
class DocEntry:
    name: str  # qualified: json.dumps, pathlib.Path.glob
    kind: str  # module | class | function | method
    signature: str
    doc: str
    source: str  # file:line, or "built-in"

    def summary(self) -> str:
        return self.doc.strip().split("\n\n", 1)[0][:600]


# Prose words and the abbreviations Python's names use for them.
ALIASES = {"string": "str", "object": "obj", "dictionary": "dict", "integer": "int", "directory": "dir",
           "argument": "arg", "boolean": "bool", "function": "func", "temporary": "temp", "tmp": "temp",
           "serialise": "serialize", "current": "now", "regular": "regex", "expression": "regex", "re": "regex"}  # fmt: skip


def _normal(word: str) -> str:
    word = word.lower()
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return ALIASES.get(word, word)


def tokenize(text: str) -> list[str]:
    """Words of identifiers and prose: snake_case and CamelCase split, normalised, stopwords out."""
    words = re.findall(r"[A-Za-z][a-z0-9]*|[A-Z]+(?![a-z])|\d+", text.replace("_", " "))
    return [_normal(w) for w in words if len(w) > 1 and w.lower() not in STOPWORDS]


def _document_tokens(entry: DocEntry) -> list[str]:
    last = entry.name.rsplit(".", 1)[-1]
    summary = entry.summary()
    # The name and the first paragraph say what the thing is; the rest of a long docstring
    # would dilute them (BM25 normalises by length), so it counts once and only in part.
    return (tokenize(entry.name) + tokenize(last) * 2 + tokenize(entry.signature)
            + tokenize(summary) * 2 + tokenize(entry.doc[len(summary) : 800]))  # fmt: skip


# -- reading modules ---------------------------------------------------------------------------
def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        return f"({ast.unparse(node.args)})" + (f" -> {ast.unparse(node.returns)}" if node.returns else "")
    except Exception:
        return "(...)"


def entries_from_source(module: str, path: Path) -> Iterator[DocEntry]:
    """Module, class, function and method docstrings from source, without importing it."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return
    doc = ast.get_docstring(tree) or ""
    yield DocEntry(module, "module", "", doc[:MAX_DOC], f"{path}:1")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield DocEntry(f"{module}.{node.name}", "function", _signature(node),
                           (ast.get_docstring(node) or "")[:MAX_DOC], f"{path}:{node.lineno}")  # fmt: skip
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield DocEntry(f"{module}.{node.name}", "class", "", (ast.get_docstring(node) or "")[:MAX_DOC],
                           f"{path}:{node.lineno}")  # fmt: skip
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    not item.name.startswith("_") or item.name == "__init__"
                ):
                    yield DocEntry(f"{module}.{node.name}.{item.name}", "method", _signature(item),
                                   (ast.get_docstring(item) or "")[:MAX_DOC], f"{path}:{item.lineno}")  # fmt: skip


def entries_from_import(module: str) -> Iterator[DocEntry]:
    """Docstrings of a compiled standard-library module (no source to read), via inspect."""
    try:
        with warnings.catch_warnings():  # "deprecated module" warnings are not the user's concern
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except Exception:
        return
    yield DocEntry(module, "module", "", (inspect.getdoc(mod) or "")[:MAX_DOC], "built-in")
    for name, value in sorted(vars(mod).items()):
        if name.startswith("_") or getattr(value, "__module__", module) not in (module, None, "builtins"):
            continue
        kind = "class" if inspect.isclass(value) else "function" if callable(value) else None
        if kind is None:
            continue
        try:
            signature = str(inspect.signature(value))
        except (TypeError, ValueError):
            signature = ""
        yield DocEntry(f"{module}.{name}", kind, signature, (inspect.getdoc(value) or "")[:MAX_DOC], "built-in")
        if kind == "class":
            for attr, member in sorted(vars(value).items()):
                if attr.startswith("_") or not callable(member):
                    continue
                yield DocEntry(f"{module}.{name}.{attr}", "method", "", (inspect.getdoc(member) or "")[:MAX_DOC],
                               "built-in")  # fmt: skip


def _modules_under(root: Path, prefix: str = "", limit: int | None = None) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) for the .py files under ``root``, skipping tests and private modules."""
    count = 0
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith((".", "_")) and d.isidentifier())
        rel = Path(directory).relative_to(root)
        package = ".".join(part for part in (prefix, *rel.parts) if part)
        for name in sorted(files):
            if not name.endswith(".py") or (name.startswith("_") and name != "__init__.py"):
                continue
            stem = name[:-3]
            if stem != "__init__" and not stem.isidentifier():
                continue
            dotted = package if stem == "__init__" else ".".join(p for p in (package, stem) if p)
            if not dotted:
                continue
            yield dotted, Path(directory) / name
            count += 1
            if limit and count >= limit:
                return


def stdlib_entries() -> Iterator[DocEntry]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for dotted, path in _modules_under(stdlib):
        if dotted.split(".")[0] in {"this", "antigravity"}:
            continue
        yield from entries_from_source(dotted, path)
    compiled = set(sys.builtin_module_names)
    dynload = stdlib / "lib-dynload"
    if dynload.is_dir():
        compiled |= {p.name.split(".")[0] for p in dynload.iterdir() if p.suffix == ".so"}
    for module in sorted(compiled):
        if not module.startswith("_") and module not in {"this", "antigravity"}:
            yield from entries_from_import(module)


def site_entries(site_dir: Path) -> Iterator[DocEntry]:
    for top in sorted(site_dir.iterdir()):
        if top.name.startswith(("_", ".")) or top.name.endswith((".dist-info", ".egg-info", ".data")):
            continue
        if top.is_dir() and (top / "__init__.py").exists() and top.name.isidentifier():
            for dotted, path in _modules_under(top, top.name, MAX_FILES_PER_PACKAGE):
                yield from entries_from_source(dotted, path)
        elif top.suffix == ".py" and top.stem.isidentifier():
            yield from entries_from_source(top.stem, top)


def project_site_dirs(project: Path) -> list[Path]:
    """site-packages of a virtualenv inside the project (.venv, venv, env), if any."""
    found = []
    for name in (".venv", "venv", "env"):
        if (project / name / "pyvenv.cfg").is_file():
            found += sorted((project / name).glob("lib/python3*/site-packages"))
    return found


def default_site_dirs(project: Path | None) -> list[Path]:
    """The project's virtualenv if it has one, else the base interpreter's installed packages."""
    if project is not None:
        dirs = project_site_dirs(project)
        if dirs:
            return dirs
    base = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"])
    return [base] if base.is_dir() else []


# -- the index -------------------------------------------------------------------------------------
class DocsIndex:
    def __init__(self, entries: list[DocEntry], retriever) -> None:
        self.entries = entries
        self.retriever = retriever
        self._by_name: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            self._by_name.setdefault(entry.name.lower(), []).append(i)
            self._by_name.setdefault(entry.name.rsplit(".", 1)[-1].lower(), []).append(i)

    @classmethod
    def build(cls, entries: Iterable[DocEntry]) -> DocsIndex:
        import bm25s

        unique: dict[str, DocEntry] = {}
        for entry in entries:
            unique.setdefault(entry.name, entry)
        items = list(unique.values())
        retriever = bm25s.BM25()
        retriever.index([_document_tokens(e) or ["empty"] for e in items], show_progress=False)
        return cls(items, retriever)

    def save(self, directory: Path) -> None:
        """Write atomically: a temp dir renamed into place."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".docs-", dir=directory.parent))
        try:
            self.retriever.save(str(tmp / "bm25"), show_progress=False)
            with open(tmp / "entries.jsonl", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(asdict(entry)) + "\n" for entry in self.entries)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: Path) -> DocsIndex:
        import bm25s

        retriever = bm25s.BM25.load(str(directory / "bm25"), show_progress=False, verbosity=0) \
            if "verbosity" in inspect.signature(bm25s.BM25.load).parameters \
            else bm25s.BM25.load(str(directory / "bm25"))  # fmt: skip
        with open(directory / "entries.jsonl", encoding="utf-8") as handle:
            entries = [DocEntry(**json.loads(line)) for line in handle]
        return cls(entries, retriever)

    def search(self, query: str, k: int = 5, prefix: str | None = None) -> list[tuple[DocEntry, float]]:
        """Best ``k`` entries: an exact (qualified or last-part) name match first, then BM25."""
        results: list[tuple[DocEntry, float]] = []
        seen: set[int] = set()
        key = query.strip().lower()
        if key and " " not in key:
            for i in self._by_name.get(key, []) + self._by_name.get(key.rsplit(".", 1)[-1], []):
                entry = self.entries[i]
                exact = entry.name.lower() == key or entry.name.lower().endswith("." + key)
                if exact and i not in seen and (not prefix or entry.name.startswith(prefix)):
                    seen.add(i)
                    results.append((entry, float("inf")))
        tokens = tokenize(query)
        if tokens and len(results) < k:
            want = min(len(self.entries), max(k * 5, 50) if prefix else k + len(results))
            docs, scores = self.retriever.retrieve([tokens], k=want, show_progress=False)
            for i, score in zip(docs[0].tolist(), scores[0].tolist()):
                if score <= 0 or i in seen:
                    continue
                entry = self.entries[i]
                if prefix and not (entry.name == prefix or entry.name.startswith(prefix + ".")):
                    continue
                seen.add(i)
                results.append((entry, float(score)))
        return results[:k]


def cache_key(site_dirs: list[Path]) -> str:
    parts = [f"format={FORMAT}", sys.version, sysconfig.get_paths()["stdlib"]]
    for site_dir in site_dirs:
        parts.append(str(site_dir))
        parts += sorted(p.name for p in site_dir.glob("*.dist-info"))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "assistant" / "docs"


def open_index(project: Path | None = None, cache_dir: Path | None = None, *, rebuild: bool = False) -> DocsIndex:
    """The cached index for this interpreter and the project's packages, built on first use."""
    site_dirs = default_site_dirs(project)
    directory = (cache_dir or default_cache_dir()) / cache_key(site_dirs)
    if not rebuild and (directory / "entries.jsonl").is_file():
        try:
            return DocsIndex.load(directory)
        except Exception:
            pass  # a damaged cache is rebuilt
    entries = list(stdlib_entries())
    for site_dir in site_dirs:
        entries += list(site_entries(site_dir))
    index = DocsIndex.build(entries)
    index.save(directory)
    return index
