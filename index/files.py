"""Which files of a project the index reads: .gitignore rules, default ignores, size and type checks.

Directory symlinks are never followed (no loops); file symlinks are read only when they point at a
regular file inside the project. Every file left out for a reason a user would want to know
(binary, not UTF-8, too large, unreadable, symlink) is counted in ``ScanResult.skipped``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

import pathspec

# Directories no one wants in a code index.
DEFAULT_IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", ".assistant", ".venv", "venv", "virtualenv", "node_modules",
    "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".eggs", "build",
    "dist", "target", "out", ".gradle", ".idea", ".cache", "coverage", "htmlcov", ".next", ".nuxt",
    "bower_components", "site-packages", ".ipynb_checkpoints", ".terraform",
})
DEFAULT_IGNORED_PATTERNS = (
    "*.egg-info/", "*.min.js", "*.min.css", "*.map", "*.lock", "package-lock.json", "*.pyc", "*.pyo",
    "*.so", "*.dylib", "*.dll", "*.o", "*.a", "*.class", "*.jar", "*.whl", "*.zip", "*.gz", "*.tar",
    "*.png", "*.jpg", "*.jpeg", "*.gif", "*.ico", "*.pdf", "*.onnx", "*.safetensors", "*.pt", "*.bin",
    "*.npy", "*.npz", "*.sqlite3", "*.db", ".DS_Store",
)
# Editors' temporary and swap files (also ignored by the watcher).
TEMP_PATTERNS = ("*.swp", "*.swo", "*.swx", "*~", ".#*", "#*#", "*.tmp", "*.part", "4913", ".*.kate-swp")

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".rb": "ruby", ".sh": "bash", ".bash": "bash", ".zsh": "bash",
    ".md": "markdown", ".rst": "text", ".txt": "text", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".json": "json", ".cfg": "ini", ".ini": "ini", ".sql": "sql", ".html": "html", ".css": "css",
    ".kt": "kotlin", ".swift": "swift", ".php": "php", ".cs": "csharp", ".scala": "scala", ".lua": "lua",
    ".r": "r", ".jl": "julia", ".proto": "proto", ".tf": "terraform", ".vue": "vue", ".svelte": "svelte",
}
FILENAMES = {"Makefile": "make", "Dockerfile": "dockerfile", "CMakeLists.txt": "cmake", "Justfile": "make"}
SHEBANGS = {"python": "python", "bash": "bash", "sh": "bash", "node": "javascript", "ruby": "ruby"}


@dataclasses.dataclass(frozen=True)
class SourceFile:
    rel: str          # posix path relative to the project root
    path: Path        # absolute path
    size: int
    mtime_ns: int


@dataclasses.dataclass
class ScanResult:
    files: list[SourceFile]
    skipped: collections.Counter


def language_of(rel: str, head: bytes = b"") -> str | None:
    """The language of a file from its name, or its shebang line; None when it is not a text type we index."""
    name = rel.rsplit("/", 1)[-1]
    if name in FILENAMES:
        return FILENAMES[name]
    suffix = os.path.splitext(name)[1].lower()
    if suffix in LANGUAGES:
        return LANGUAGES[suffix]
    if not suffix and head.startswith(b"#!"):
        first = head.split(b"\n", 1)[0].decode("ascii", "replace")
        for word, lang in SHEBANGS.items():
            if word in first.rsplit("/", 1)[-1]:
                return lang
    return None


_TEMP_SPEC = pathspec.GitIgnoreSpec.from_lines(TEMP_PATTERNS)


def is_temp_file(rel: str) -> bool:
    """Editor temp/swap/backup files: never indexed, and the watcher ignores their events."""
    return _TEMP_SPEC.match_file(rel.rsplit("/", 1)[-1])


class IgnoreRules:
    """Default ignores + the user's patterns + every .gitignore (and .git/info/exclude) on the way down."""

    def __init__(self, root: Path, extra: Iterable[str] = ()) -> None:
        self.root = root
        self._base = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_IGNORED_PATTERNS, *TEMP_PATTERNS, *extra])
        self._dir_specs: dict[str, tuple[int, pathspec.PathSpec | None]] = {}

    def _spec_for(self, rel_dir: str) -> pathspec.PathSpec | None:
        """The .gitignore spec of one directory (cached, reloaded when the file changes)."""
        directory = self.root / rel_dir if rel_dir else self.root
        files = [directory / ".gitignore"]
        if not rel_dir:
            files.append(self.root / ".git" / "info" / "exclude")
        stamp = 0
        for f in files:
            try:
                stamp = hash((stamp, f.stat().st_mtime_ns))
            except OSError:
                pass
        cached = self._dir_specs.get(rel_dir)
        if cached and cached[0] == stamp:
            return cached[1]
        lines: list[str] = []
        for f in files:
            try:
                lines += f.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                pass
        spec = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        self._dir_specs[rel_dir] = (stamp, spec)
        return spec

    def is_ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether ``rel`` (posix, relative to the root) is ignored; its parents are assumed not to be."""
        name = rel.rsplit("/", 1)[-1]
        if is_dir and name in DEFAULT_IGNORED_DIRS:
            return True
        probe = rel + "/" if is_dir else rel
        if self._base.match_file(probe):
            return True
        parts = rel.split("/")
        for depth in range(len(parts)):
            rel_dir = "/".join(parts[:depth])
            spec = self._spec_for(rel_dir)
            if spec is not None:
                sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
                if spec.match_file(sub):
                    return True
        return False

    def is_ignored_path(self, rel: str, is_dir: bool) -> bool:
        """Like ``is_ignored`` but also checks every parent directory (for single paths from the watcher)."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self.is_ignored("/".join(parts[:depth]), True):
                return True
        return self.is_ignored(rel, is_dir)


class Scanner:
    """Walks a project (or a few paths of it) and returns the files to index, counting what it skips."""

    def __init__(self, root: Path, extra_ignores: Iterable[str] = (), max_file_bytes: int = 1_000_000) -> None:
        self.root = root.resolve()
        self.rules = IgnoreRules(self.root, extra_ignores)
        self.max_file_bytes = max_file_bytes

    def scan(self, paths: Iterable[str] | None = None) -> ScanResult:
        """All indexable files (``paths=None``) or those at/under the given relative paths."""
        skipped: collections.Counter = collections.Counter()
        files: list[SourceFile] = []
        if paths is None:
            candidates: Iterable[str] = self._walk("", skipped)
        else:
            candidates = self._expand(paths, skipped)
        seen = set()
        for rel in candidates:
            if rel in seen:
                continue
            seen.add(rel)
            info = self._check_file(rel, skipped)
            if info is not None:
                files.append(info)
        files.sort(key=lambda f: f.rel)
        return ScanResult(files, skipped)

    def _expand(self, paths: Iterable[str], skipped: collections.Counter) -> Iterator[str]:
        for rel in sorted(set(paths)):
            full = self.root / rel
            try:
                st = full.lstat()
            except OSError:
                continue  # gone: the caller deletes what the manifest had there
            if stat.S_ISDIR(st.st_mode):
                if not self.rules.is_ignored_path(rel, True):
                    yield from self._walk(rel, skipped)
            elif not self.rules.is_ignored_path(rel, False):
                yield rel

    def _walk(self, rel_dir: str, skipped: collections.Counter) -> Iterator[str]:
        stack = [rel_dir]
        while stack:
            current = stack.pop()
            directory = self.root / current if current else self.root
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                skipped["unreadable"] += 1
                continue
            for entry in entries:
                rel = f"{current}/{entry.name}" if current else entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    if not self.rules.is_ignored(rel, True) and not _is_virtualenv(entry.path):
                        stack.append(rel)
                    continue
                if entry.is_symlink():
                    try:
                        if os.path.isdir(entry.path):
                            skipped["symlink"] += 1  # never followed: no loops, no escapes
                            continue
                    except OSError:
                        pass
                if not self.rules.is_ignored(rel, False):
                    yield rel

    def _check_file(self, rel: str, skipped: collections.Counter) -> SourceFile | None:
        full = self.root / rel
        try:
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = full.resolve(strict=True)
                if not target.is_relative_to(self.root):
                    skipped["symlink"] += 1
                    return None
                st = target.stat()
        except (OSError, RuntimeError):  # broken link, symlink loop, vanished
            skipped["unreadable"] += 1
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > self.max_file_bytes:
            skipped["too large"] += 1
            return None
        if language_of(rel) is None and not self._has_shebang(full):
            skipped["other type"] += 1
            return None
        return SourceFile(rel, full, st.st_size, st.st_mtime_ns)

    @staticmethod
    def _has_shebang(path: Path) -> bool:
        if os.path.splitext(path.name)[1]:
            return False
        try:
            with open(path, "rb") as handle:
                return language_of(path.name, handle.read(128)) is not None
        except OSError:
            return False


def _is_virtualenv(path: str) -> bool:
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))


def decode_source(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) for a UTF-8 text file, or (None, reason) for binary / non-UTF-8 content."""
    if b"\x00" in data[:8192]:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    return text.lstrip("\ufeff"), None
