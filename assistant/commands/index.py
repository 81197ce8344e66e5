"""``assistant index [PATH] [--watch]`` and ``assistant search QUERY``: the codebase index.

Settings come from the ``[index]`` table of the settings file (see ``index.settings.IndexSettings``);
``--chroma-host``/``--chroma-port`` override it. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index", help="build or update the codebase index (Chroma + embeddings + BM25)",
        description="Index a project's files for `assistant search` and the agent's search_codebase tool. "
                    "Only changed files are re-read and only changed chunks re-embedded.",
    )
    p.add_argument("path", nargs="?", default=".", help="project directory (default: .)")
    p.add_argument("--watch", action="store_true", help="keep the index fresh while files change (Ctrl-C stops)")
    p.add_argument("--rebuild", action="store_true", help="drop the index and build it again from scratch")
    p.add_argument("--status", action="store_true", help="only say whether the index is fresh, stale or absent")
    p.add_argument("--chroma-host", metavar="HOST", help="use a Chroma server instead of the embedded store")
    p.add_argument("--chroma-port", metavar="PORT", type=int, help="the Chroma server's port (default 8000)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_index)

    s = sub.add_parser(
        "search", help="search the codebase index",
        description="Hybrid search (embeddings + BM25) over the index built by `assistant index`.",
    )
    s.add_argument("query", help="what you are looking for, in words or identifiers")
    s.add_argument("-k", type=int, default=10, metavar="N", help="number of results (default 10)")
    s.add_argument("--path", metavar="GLOB", help="only files matching GLOB (e.g. 'src/**/*.py' or 'tests/')")
    s.add_argument("--lang", metavar="L", help="only this language (python, javascript, go, ... or an extension)")
    s.add_argument("--project", metavar="DIR", default=".", help="project directory (default: .)")
    s.add_argument("--json", action="store_true", help="print the hits as JSON lines")
    s.add_argument("--chroma-host", metavar="HOST", help="use a Chroma server instead of the embedded store")
    s.add_argument("--chroma-port", metavar="PORT", type=int, help="the Chroma server's port")
    s.set_defaults(handler=run_search)


def _settings(project: Path, args: argparse.Namespace):
    from assistant.settings import load_settings, section
    from index.settings import IndexSettings

    overrides = {}
    if args.chroma_host:
        overrides["chroma_host"] = args.chroma_host
    if args.chroma_port is not None:
        overrides["chroma_port"] = args.chroma_port
    settings = section(load_settings(project), "index", IndexSettings)
    if overrides:
        import dataclasses

        settings = dataclasses.replace(settings, **overrides)
    return settings


def _project(path: str) -> Path:
    project = Path(path).expanduser()
    if not project.exists():
        raise UsageError(f"{path} does not exist", "give the project's directory, e.g. `.`")
    if not project.is_dir():
        raise UsageError(f"{path} is not a directory", "give the project's directory, e.g. `.`")
    return project


class _Bars:
    """Two tqdm bars on stderr (files scanned, chunks embedded); silent when stderr is not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.bars: dict = {}

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(event.stage)
        if bar is None:
            label = {"scan": "files", "embed": "chunks"}.get(event.stage, event.stage)
            bar = self.bars[event.stage] = tqdm(total=event.total, desc=f"{label:>6}", unit=label[:-1],
                                                file=sys.stderr, leave=False, dynamic_ncols=True)
        bar.total = event.total
        bar.n = event.done
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def run_index(args: argparse.Namespace) -> int:
    project = _project(args.path)
    settings = _settings(project, args)
    from index import open_index

    idx = open_index(project, settings)
    if args.status:
        print(idx.status().line())
        return 0
    bars = _Bars(args.quiet)
    try:
        summary = idx.update(progress=bars, rebuild=args.rebuild)
    finally:
        bars.close()
    print(summary.line())
    if summary.files == 0:
        print(f"nothing to index in {project} (no source files found; see .gitignore and [index] ignore)")
    if not args.watch:
        return 0

    def report(s) -> None:
        if s.changed or s.removed or s.embedded or s.deleted:
            print(s.line(), flush=True)

    def failed(exc: Exception) -> None:
        print(f"assistant: warning: index update failed: {exc}", file=sys.stderr, flush=True)

    try:
        watcher = idx.watcher(on_update=report, on_error=failed).start()
        print(f"watching {idx.root} for changes (Ctrl-C stops)", flush=True)
        watcher.run_forever()
    except KeyboardInterrupt:
        print("stopped watching", flush=True)
    return 0


def _language(name: str | None) -> str | None:
    if not name:
        return None
    from index.files import LANGUAGES

    name = name.strip().lower()
    return LANGUAGES.get("." + name.lstrip("."), name)


def run_search(args: argparse.Namespace) -> int:
    if args.k <= 0:
        raise UsageError(f"-k must be a positive number, got {args.k}")
    project = _project(args.project)
    settings = _settings(project, args)
    from index import open_index

    idx = open_index(project, settings)
    hits = idx.search(args.query, k=args.k, path_glob=args.path, lang=_language(args.lang))
    if args.json:
        for hit in hits:
            print(json.dumps(hit.as_dict()))
        return 0
    if not hits:
        print("no matches")
        return 0
    for hit in hits:
        print(f"{hit.location}  {hit.symbol or '-'}  {hit.score:.4f}")
        for line in hit.snippet.split("\n"):
            print(f"    {line}")
    status = idx.status()
    if status.state == "stale":
        print(f"(index is {status.line()}; run `assistant index .`)", file=sys.stderr)
    return 0
