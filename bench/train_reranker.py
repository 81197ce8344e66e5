"""Train the hybrid search's reranker (index/rerank.py) and write index/reranker_weights.json.

The training corpus is standard-library code that the retrieval benchmark never uses (its default
--dirs json/ http/ email/ asyncio/ are excluded here), prepared the same way: docstrings removed
from the indexed copy, each first docstring line a query whose answer is its function, and here
classes too (a reranker that only saw functions sought would learn to push classes down). Every query's
candidates (the union of the dense, BM25 and symbol lists' top ``--depth``) get their feature rows
exactly as ``CodebaseIndex.search`` computes them; the linear model is fitted with a listwise
softmax loss (convex; L-BFGS), so the same corpus gives the same weights.

    .venv/bin/python bench/train_reranker.py                 # ~10 min on 2 shared cores
    .venv/bin/python bench/train_reranker.py --validate      # also report a third, held-out corpus
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import retrieval as bench  # noqa: E402

from index import IndexSettings, open_index  # noqa: E402
from index.rerank import WEIGHTS_PATH, fit  # noqa: E402

TRAIN_DIRS = ("logging", "xml", "urllib", "concurrent", "importlib", "unittest", "multiprocessing", "collections",
              "ctypes", "sqlite3", "wsgiref", "xmlrpc", "tomllib", "zoneinfo", "dbm", "html", "curses",
              "argparse.py", "configparser.py", "difflib.py", "inspect.py", "pathlib.py", "shutil.py",
              "subprocess.py", "tarfile.py", "zipfile.py", "textwrap.py", "typing.py", "datetime.py",
              "decimal.py", "statistics.py", "pydoc.py")
VALIDATION_DIRS = ("lib2to3", "idlelib", "distutils", "tkinter", "smtplib.py", "imaplib.py", "ftplib.py",
                   "mailbox.py", "nntplib.py", "pickle.py", "optparse.py", "gettext.py", "locale.py")


def examples_for(dirs, work: Path, settings: IndexSettings, depth: int):
    """Index ``dirs`` (prepared as the benchmark does) and return its queries' reranker inputs."""
    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    queries = bench.make_corpus(dirs, project, classes=True)
    idx = open_index(project, settings)
    t = time.perf_counter()
    summary = idx.update()
    print(f"  {len(dirs)} dirs: {summary.files} files, {summary.chunks} chunks, {len(queries)} queries "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    lists, chunks = bench.evaluate(idx, queries)
    return queries, lists, chunks, bench.rerank_inputs(idx, queries, lists, chunks, depth)


def report(name, reranker, queries, lists, chunks, inputs, settings) -> None:
    """RRF against the reranker, for all queries and for those seeking functions and classes."""
    reranked = [bench._reranked(reranker, ids, rows, chunks) for ids, rows, _ in inputs]
    for kind in ("all", "function", "class"):
        keep = [i for i, q in enumerate(queries) if kind == "all" or q.kind == kind]
        rows = bench.quality_table([queries[i] for i in keep], [lists[i] for i in keep], chunks, settings,
                                   [reranked[i] for i in keep])
        rrf, ours = rows["hybrid (RRF)"], rows["hybrid + learned reranker"]
        print(f"{name}, {kind} ({len(keep)} queries): hybrid RRF R@10 {rrf['R@10']:.3f} -> with the reranker "
              f"{ours['R@10']:.3f} (MRR@10 {rrf['MRR@10']:.3f} -> {ours['MRR@10']:.3f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=IndexSettings().rerank_depth)
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--validate", action="store_true", help="also evaluate on a third corpus")
    parser.add_argument("--output", default=str(WEIGHTS_PATH))
    parser.add_argument("--keep", metavar="DIR", help="keep the corpora and indexes in DIR")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="reranker-"))
    settings = IndexSettings(cache_dir=str(work / "embedders"))
    overlap = set(TRAIN_DIRS) & set(bench.DEFAULT_DIRS)
    if overlap:
        raise SystemExit(f"training dirs overlap the benchmark's: {overlap}")

    print("training corpus")
    train = examples_for(TRAIN_DIRS, work / "train", settings, args.depth)
    reranker = fit([(rows, labels) for _, rows, labels in train[3]], l2=args.l2)
    reranker.info = {"trained_on": list(TRAIN_DIRS), "queries": len(train[0]), "depth": args.depth,
                     "l2": args.l2, "date": time.strftime("%Y-%m-%d"), "by": "bench/train_reranker.py"}
    report("training corpus", reranker, *train, settings)
    if args.validate:
        print("validation corpus (neither trained on nor the benchmark's)")
        report("validation corpus", reranker, *examples_for(VALIDATION_DIRS, work / "valid", settings, args.depth),
               settings)
    reranker.save(Path(args.output))
    print(f"wrote {args.output}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
