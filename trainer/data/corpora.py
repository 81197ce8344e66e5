"""Reading raw corpora: text documents for stage 1, source files for stage 2.

Text: ``.txt`` (split on ``<|endoftext|>`` when present, the TinyStories format; otherwise one
document per file), ``.jsonl`` (one JSON object per line with a text field), ``.md``/``.rst``.
Code: bash scripts by shebang or ``.sh``, plus files matching ``--glob``; binaries, huge files
and duplicates (by content hash) are dropped and counted, and every kept file is recorded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from trainer import TrainerError

TEXT_SUFFIXES = {".txt", ".jsonl", ".md", ".rst", ".text"}
SHELL_SHEBANGS = ("bash", "/sh", " sh", "zsh", "dash", "ksh")
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox", "site-packages"}


@dataclass
class SourceRecord:
    path: str
    sha256: str
    bytes: int
    documents: int = 1


@dataclass
class CorpusReport:
    """What was read and what was skipped, for the manifest and the summary line."""

    sources: list[SourceRecord] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {"binary": 0, "huge": 0, "duplicate": 0, "unreadable": 0, "empty": 0})

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _check_inputs(inputs: list[str | Path]) -> list[Path]:
    if not inputs:
        raise TrainerError("no input given", "pass --input PATH (files or directories)")
    paths = [Path(p).expanduser() for p in inputs]
    for p in paths:
        if not p.exists():
            raise TrainerError(f"input not found: {p}", "check the path given to --input")
    return paths


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _read(path: Path, report: CorpusReport, max_bytes: int) -> tuple[bytes, str] | None:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            report.skip("huge")
            return None
        raw = path.read_bytes()
    except OSError:
        report.skip("unreadable")
        return None
    if not raw.strip():
        report.skip("empty")
        return None
    if b"\x00" in raw[:8192]:
        report.skip("binary")
        return None
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError:
        report.skip("binary")
        return None


def iter_text_documents(inputs: list[str | Path], report: CorpusReport, text_field: str = "text",
                        max_bytes: int = 8 << 30) -> Iterator[str]:
    """Documents from text corpora (see module docstring)."""
    for root in _check_inputs(inputs):
        for path in _walk(root):
            if root.is_dir() and path.suffix.lower() not in TEXT_SUFFIXES:
                continue
            got = _read(path, report, max_bytes)
            if got is None:
                continue
            raw, text = got
            if path.suffix.lower() == ".jsonl":
                docs = []
                for line_no, line in enumerate(text.splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line).get(text_field)
                    except (json.JSONDecodeError, AttributeError) as exc:
                        raise TrainerError(f"{path}:{line_no} is not a JSON object", f"each line needs a '{text_field}' field") from exc
                    if isinstance(value, str) and value.strip():
                        docs.append(value)
            elif "<|endoftext|>" in text:
                docs = [d.strip() for d in text.split("<|endoftext|>") if d.strip()]
            else:
                docs = [text]
            report.sources.append(SourceRecord(str(path), hashlib.sha256(raw).hexdigest(), len(raw), len(docs)))
            yield from docs


def is_shell_script(path: Path, head: str) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    first = head.split("\n", 1)[0]
    return first.startswith("#!") and any(s in first for s in SHELL_SHEBANGS)


def iter_code_documents(inputs: list[str | Path], report: CorpusReport, globs: list[str] | None = None,
                        include_shell: bool = True, max_bytes: int = 1 << 20) -> Iterator[str]:
    """Source files: shell scripts (shebang or .sh) and files matching ``globs``; deduplicated."""
    seen: set[str] = set()
    for root in _check_inputs(inputs):
        for path in _walk(root):
            by_glob = any(fnmatch.fnmatch(path.name, g) for g in globs or [])
            if not by_glob and not include_shell:
                continue
            if not by_glob:  # cheap shebang check before reading the whole file
                if path.suffix not in (".sh", ".bash"):
                    try:
                        with path.open("rb") as handle:
                            head = handle.read(128)
                    except OSError:
                        report.skip("unreadable")
                        continue
                    if not head.startswith(b"#!"):
                        continue
            got = _read(path, report, max_bytes)
            if got is None:
                continue
            raw, text = got
            if not by_glob and not is_shell_script(path, text[:200]):
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if digest in seen:
                report.skip("duplicate")
                continue
            seen.add(digest)
            report.sources.append(SourceRecord(str(path), digest, len(raw)))
            yield text
