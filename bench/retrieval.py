"""Retrieval benchmark on the Python standard library: quality, indexing speed, update time, latency.

Corpus: the stdlib packages named by --dirs (tests excluded), copied into a temporary project with
each function's own docstring removed. Queries: the first line of each removed docstring (at least
three words, unique in the corpus); the gold answer is that function (a hit is a chunk of the
function's file whose lines overlap the function).

Reports recall@1/5/10 and MRR@10 for dense (Chroma), BM25, symbol-name BM25, the hybrid fusion (RRF)
and the hybrid with the learned reranker (the default; trained on other packages by
bench/train_reranker.py),
the recall of the union of the dense and BM25 top-10s, index throughput (files/s, chunks/s),
embedding throughput per backend as a ratio to sentence-transformers (torch), a one-file
incremental update's time, and hybrid query latency p50/p95.

    .venv/bin/python bench/retrieval.py                      # the full benchmark (several minutes)
    .venv/bin/python bench/retrieval.py --dirs json --quick   # a smoke run
    .venv/bin/python bench/retrieval.py --tune                # grid-search the fusion settings
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import os
import platform
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from index import IndexSettings, open_index
from index.indexer import _symbol_key
from index.rerank import Reranker, feature_rows
from index.retrieve import one_per_symbol, weighted_rrf

DEFAULT_DIRS = ("json", "http", "email", "asyncio")


@dataclasses.dataclass(frozen=True)
class Query:
    text: str
    path: str
    start: int   # the function's lines (1-based, inclusive)
    end: int
    qualname: str
    kind: str = "function"  # or "class" (only in the reranker's training corpus)


def _docstring_node(node) -> ast.Expr | None:
    if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) \
            and isinstance(node.body[0].value.value, str):
        return node.body[0]
    return None


def _functions(tree, classes: bool = False):
    """(qualname, node) for every function, methods and nested functions included (and classes)."""
    out = []

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{node.name}" if prefix else node.name
                if classes or not isinstance(node, ast.ClassDef):
                    out.append((name, node))
                visit(node.body, name)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        visit([n for n in inner if isinstance(n, ast.AST) and hasattr(n, "lineno")], prefix)

    visit(tree.body, "")
    return out


def make_corpus(dirs, dest: Path, stdlib: Path | None = None, classes: bool = False) -> list[Query]:
    """Copy ``dirs`` of the stdlib into ``dest`` with function docstrings removed; return the queries.

    ``classes`` also removes class docstrings and asks for classes (the reranker's training corpus:
    a reranker that only ever saw functions sought would learn to push classes down)."""
    stdlib = stdlib or Path(sysconfig.get_paths()["stdlib"])
    candidates = []
    for d in dirs:
        base = stdlib / d
        for src in [base] if base.is_file() else sorted(base.rglob("*.py")):
            rel = src.relative_to(stdlib).as_posix()
            if any(part in ("test", "tests") for part in rel.split("/")[:-1]) or src.name.startswith("test"):
                continue
            try:
                text = src.read_text(encoding="utf-8")
                tree = ast.parse(text)
            except (UnicodeDecodeError, SyntaxError, ValueError):
                continue  # e.g. lib2to3's deliberately broken samples
            lines = text.split("\n")
            removals = []  # (start, end, node)
            found = []
            for qualname, node in _functions(tree, classes):
                doc = _docstring_node(node)
                if doc is None:
                    continue
                first = next((ln.strip() for ln in doc.value.value.strip().split("\n") if ln.strip()), "")
                removals.append((doc.lineno, doc.end_lineno, node, len(node.body) == 1))
                found.append((qualname, node, first))
            # delete docstrings bottom-up, recording how line numbers shift
            deleted = []
            for start, end, node, only in sorted(removals, key=lambda r: -r[0]):
                indent = lines[start - 1][: len(lines[start - 1]) - len(lines[start - 1].lstrip())]
                lines[start - 1:end] = [indent + "pass"] if only else []
                deleted.append((start, end - start + (0 if only else 1)))

            def shift(line: int, deleted=deleted) -> int:
                return line - sum(n for s, n in deleted if s < line)

            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines), encoding="utf-8")
            for qualname, node, first in found:
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                candidates.append(Query(first, rel, shift(start), shift(node.end_lineno), qualname, kind))
    counts: dict[str, int] = {}
    for q in candidates:
        counts[q.text] = counts.get(q.text, 0) + 1
    return [q for q in candidates if len(q.text.split()) >= 3 and counts[q.text] == 1]


def _is_gold(query: Query, record) -> bool:
    if query.kind == "class":  # the class itself, not any of its methods (which its lines contain)
        return record[0] == query.path and record[2] == query.qualname
    return record[0] == query.path and record[4] <= query.end and record[5] >= query.start


def _rank_of(query: Query, ranked_ids, chunks) -> int | None:
    for rank, cid in enumerate(ranked_ids[:10], start=1):
        if _is_gold(query, chunks[cid]):
            return rank
    return None


def _metrics(ranks) -> dict:
    n = max(1, len(ranks))
    return {
        "R@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "R@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "R@10": sum(1 for r in ranks if r is not None and r <= 10) / n,
        "MRR@10": sum(1.0 / r for r in ranks if r is not None) / n,
    }


def _fuse(lists, s: IndexSettings, chunks):
    """The hybrid ranking exactly as ``CodebaseIndex.search`` makes it."""
    fused = weighted_rrf(
        [(lists["dense"][:s.dense_depth], s.dense_weight), (lists["lexical"][:s.lexical_depth], s.lexical_weight),
         (lists["symbol"][:s.lexical_depth], s.symbol_weight)], s.rrf_k)
    return [cid for cid, _ in one_per_symbol(fused, lambda cid: _symbol_key(cid, chunks[cid]))]


def evaluate(idx, queries, depth: int = 100):
    """Each query's scored lists ({"dense": [(id, score)], ...}), and the chunk records they point to."""
    lists = [idx.scored_lists(q.text, depth) for q in queries]
    chunks = {cid: rec for cid, rec in idx._load_manifest(strict=True)["chunks"].items()}
    return lists, chunks


def _ids(lst) -> dict:
    return {name: [cid for cid, _ in hits] for name, hits in lst.items()}


def rerank_inputs(idx, queries, lists, chunks, depth: int):
    """Per query: (candidate ids, feature rows, relevance labels), exactly as ``search`` builds them."""
    facts, idf = idx._rerank_state()
    out = []
    for q, lst in zip(queries, lists):
        ids, rows = feature_rows(q.text, lst["dense"], lst["lexical"], lst["symbol"], facts, idf, depth)
        labels = np.array([float(_is_gold(q, chunks[c])) for c in ids])
        out.append((ids, rows, labels))
    return out


def _reranked(reranker, ids, rows, chunks):
    return [cid for cid, _ in one_per_symbol(reranker.rank(ids, rows), lambda cid: _symbol_key(cid, chunks[cid]))]


def quality_table(queries, lists, chunks, settings: IndexSettings, reranked=None) -> dict:
    rows = {}
    for name in ("dense", "lexical", "symbol"):
        rows[name] = _metrics([_rank_of(q, _ids(lst)[name], chunks) for q, lst in zip(queries, lists)])
    rows["hybrid (RRF)"] = _metrics([_rank_of(q, _fuse(_ids(lst), settings, chunks), chunks)
                                     for q, lst in zip(queries, lists)])
    if reranked is not None:
        rows["hybrid + learned reranker"] = _metrics([_rank_of(q, r, chunks) for q, r in zip(queries, reranked)])
    union = [any(_is_gold(q, chunks[c]) for c in _ids(lst)["dense"][:10] + _ids(lst)["lexical"][:10])
             for q, lst in zip(queries, lists)]
    rows["union dense+bm25 @10"] = {"R@10": sum(union) / max(1, len(union))}
    return rows


def tune(queries, lists, chunks, base: IndexSettings) -> tuple[IndexSettings, float]:
    """Grid search on the even-numbered queries; returns the best settings and their R@10 there."""
    train = [(q, _ids(lst)) for i, (q, lst) in enumerate(zip(queries, lists)) if i % 2 == 0]
    best, best_key = base, (-1.0, -1.0)
    grid = itertools.product((5, 10, 20, 30, 60), (0.6, 0.8, 1.0, 1.2, 1.5), (0.0, 0.2, 0.4, 0.6, 0.8),
                             (20, 50, 100), (10, 20, 50, 100))
    for rrf_k, lexical_w, symbol_w, dense_depth, lexical_depth in grid:
        s = dataclasses.replace(base, rrf_k=rrf_k, dense_weight=1.0, lexical_weight=lexical_w,
                                symbol_weight=symbol_w, dense_depth=dense_depth, lexical_depth=lexical_depth)
        m = _metrics([_rank_of(q, _fuse(lst, s, chunks), chunks) for q, lst in train])
        key = (round(m["R@10"], 4), m["MRR@10"])
        if key > best_key:
            best, best_key = s, key
    return best, best_key[0]


def embed_speed(texts, backends, cache_dir: str, repeats: int = 1) -> dict:
    """chunks/s of each backend on the same texts (all loaded first, then timed back to back)."""
    from index.embedding import Embedder

    embedders = {b: Embedder(IndexSettings(backend=b, cache_dir=cache_dir)) for b in backends}
    for e in embedders.values():
        e.embed_documents(texts[:16])  # warm-up
    out = {b: [] for b in backends}
    for _ in range(repeats):
        for b, e in embedders.items():
            t = time.perf_counter()
            e.embed_documents(texts)
            out[b].append(len(texts) / (time.perf_counter() - t))
    return {b: max(v) for b, v in out.items()}


def _table(headers, rows) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dirs", nargs="+", default=list(DEFAULT_DIRS))
    parser.add_argument("--backend", default=IndexSettings().backend)
    parser.add_argument("--chunk-tokens", type=int, default=0, help="largest chunk (0: the model's window)")
    parser.add_argument("--signature-vectors", action="store_true", help="a second vector per definition")
    parser.add_argument("--no-code-adapter", action="store_true", help="the plain all-MiniLM-L6-v2 (no code tuning)")
    parser.add_argument("--compare-backends", nargs="*", default=["torch", "onnx", "onnx-int8"],
                        help="backends whose embedding speed is compared on the same chunks")
    parser.add_argument("--speed-sample", type=int, default=300, help="chunks in the embedding speed test")
    parser.add_argument("--speed-repeats", type=int, default=3, help="interleaved rounds; the best of each counts")
    parser.add_argument("--tune", action="store_true", help="grid-search fusion settings (train: even queries)")
    parser.add_argument("--quick", action="store_true", help="skip the backend comparison")
    parser.add_argument("--keep", metavar="DIR", help="build the corpus and index in DIR and keep them")
    args = parser.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
    project = work / "project"
    cache = work / "embedders"
    if project.exists():
        shutil.rmtree(project)
    queries = make_corpus(args.dirs, project)
    settings = IndexSettings(backend=args.backend, cache_dir=str(cache), chunk_tokens=args.chunk_tokens,
                             signature_vectors=args.signature_vectors, code_adapter=not args.no_code_adapter)
    idx = open_index(project, settings)
    _ = idx.embedder  # load (and export) the model before timing
    print(f"corpus: {', '.join(args.dirs)} -> {sum(1 for _ in project.rglob('*.py'))} files, "
          f"{len(queries)} queries; backend {args.backend}{'' if settings.code_adapter else ', no code adapter'}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}")

    t = time.perf_counter()
    summary = idx.update()
    build = time.perf_counter() - t
    files_s, chunks_s = summary.files / build, summary.chunks / build

    lists, chunks = evaluate(idx, queries)
    reranker = Reranker.load()
    reranked = [_reranked(reranker, ids, rows, chunks)
                for ids, rows, _ in rerank_inputs(idx, queries, lists, chunks, settings.rerank_depth)]
    rows = quality_table(queries, lists, chunks, settings, reranked)
    print(f"\nquality (default settings: rrf_k={settings.rrf_k}, weights dense/bm25/symbol={settings.dense_weight}/"
          f"{settings.lexical_weight}/{settings.symbol_weight}, depths {settings.dense_depth}/{settings.lexical_depth})")
    print(_table(["retriever", "R@1", "R@5", "R@10", "MRR@10"],
                 [[name, *(f"{m[k]:.3f}" if k in m else "" for k in ("R@1", "R@5", "R@10", "MRR@10"))]
                  for name, m in rows.items()]))
    if args.tune:
        best, train_r10 = tune(queries, lists, chunks, settings)
        test = [(q, _ids(lst)) for i, (q, lst) in enumerate(zip(queries, lists)) if i % 2 == 1]
        held = _metrics([_rank_of(q, _fuse(lst, best, chunks), chunks) for q, lst in test])
        default_held = _metrics([_rank_of(q, _fuse(lst, settings, chunks), chunks) for q, lst in test])
        print(f"\ntuned on even queries: rrf_k={best.rrf_k} lexical_weight={best.lexical_weight} "
              f"symbol_weight={best.symbol_weight} dense_depth={best.dense_depth} "
              f"lexical_depth={best.lexical_depth}: train R@10 {train_r10:.3f}, held-out R@10 "
              f"{held['R@10']:.3f} (defaults on held-out: {default_held['R@10']:.3f})")

    # one-file incremental update: change one function body
    target = next(p for p in sorted(project.rglob("*.py")) if p.stat().st_size > 5000)
    original = target.read_text()
    target.write_text(original.replace("\n    return ", "\n    _bench_edit = 1\n    return ", 1))
    t = time.perf_counter()
    one = idx.update()
    update_s = time.perf_counter() - t
    target.write_text(original)
    t = time.perf_counter()
    idx.update(paths=[target])
    update_paths_s = time.perf_counter() - t

    # query latency, end to end (hybrid search with snippets), as the agent calls it
    latencies = []
    for q in queries[:300]:
        t = time.perf_counter()
        idx.search(q.text, k=10)
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]

    print("\nspeed")
    speed_rows = [
        ["full index", f"{summary.files} files, {summary.chunks} chunks in {build:.1f}s",
         f"{files_s:.1f} files/s, {chunks_s:.1f} chunks/s"],
        ["one-file update (full scan)", f"{one.changed} file, {one.embedded} chunks embedded", f"{update_s:.2f} s"],
        ["one-file update (watcher path)", "same file restored", f"{update_paths_s:.2f} s"],
        ["hybrid query, end to end", f"{len(latencies)} queries, k=10", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms"],
    ]
    if not args.quick and args.compare_backends:
        texts = [chunks[c][7] for c in sorted(chunks)[: args.speed_sample]]
        speeds = embed_speed(texts, args.compare_backends, str(cache), repeats=args.speed_repeats)
        peer = speeds.get("torch")
        for b, v in speeds.items():
            ratio = f" ({v / peer:.1f}x torch)" if peer else ""
            speed_rows.append([f"embedding, {b}", f"{len(texts)} chunks, best of {args.speed_repeats} rounds",
                               f"{v:.1f} chunks/s{ratio}"])
    print(_table(["what", "size", "result"], speed_rows))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
