"""Mine (query, code chunk) pairs for tuning the index's embedder on code (bench/train_embedder.py).

Each pair is what the retrieval benchmark asks for, built the same way: a function's first
docstring line is the query, and the answer is the function's chunk as the index embeds it
(path header + code, the docstring removed). The sources are Python packages the benchmark and the
reranker never see: the standard library minus the benchmark's dirs (json/ http/ email/ asyncio/)
and the reranker's training and validation dirs, plus the installed packages' sources (sysconfig
purelib). A pair whose query text is also a benchmark or reranker query is dropped.

    .venv/bin/python bench/embedder_pairs.py --output /tmp/pairs.jsonl     # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import retrieval as bench
from train_reranker import TRAIN_DIRS, VALIDATION_DIRS

from index.chunking import TokenCounter, chunk_source
from index.embedding import default_model_path

# never mined: the benchmark's and the reranker's corpora, tests, and trees that vendor stdlib copies
HELD_BACK = set(bench.DEFAULT_DIRS) | set(TRAIN_DIRS) | set(VALIDATION_DIRS) | {"test", "tests", "site-packages"}
SKIP_PACKAGES = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel", "__pycache__"}


def _held_out_queries(work: Path) -> set[str]:
    """Every query text of the benchmark and of the reranker's corpora."""
    dirs = tuple(bench.DEFAULT_DIRS) + TRAIN_DIRS + VALIDATION_DIRS
    texts = {q.text for q in bench.make_corpus(dirs, work / "held", classes=True)}
    shutil.rmtree(work / "held", ignore_errors=True)
    return texts


def _units(root: Path, skip: set[str]) -> list[str]:
    """Top-level packages and modules under ``root`` (one corpus each)."""
    out = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in skip or name.startswith((".", "_")) and name != "__future__.py" or name.endswith(".dist-info"):
            continue
        if entry.is_dir() or name.endswith(".py"):
            out.append(name)
    return out


def pairs_for(root: Path, unit: str, work: Path, counter: TokenCounter, held: set[str], cap: int) -> list[dict]:
    dest = work / "corpus"
    shutil.rmtree(dest, ignore_errors=True)
    try:
        queries = bench.make_corpus((unit,), dest, stdlib=root)
    except (OSError, RecursionError, MemoryError):
        return []
    chunks_of: dict[str, list] = {}
    out = []
    for q in queries:
        if q.text in held or len(q.text) > 300:
            continue
        if q.path not in chunks_of:
            try:
                source = (dest / q.path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                chunks_of[q.path] = []
                continue
            chunks_of[q.path] = chunk_source(q.path, source, "python", counter)
        gold = [c for c in chunks_of[q.path] if c.start_line <= q.end and c.end_line >= q.start]
        named = [c for c in gold if c.symbol == q.qualname] or gold
        if named:
            out.append({"query": q.text, "text": named[0].text, "source": unit})
    random.Random(unit).shuffle(out)
    return out[:cap]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--per-package", type=int, default=2500, help="most pairs from one package")
    parser.add_argument("--no-packages", action="store_true", help="the standard library only")
    args = parser.parse_args(argv)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tokenizer.no_padding()  # as the index's Embedder counts: the file pads every text to 128
    tokenizer.enable_truncation(256)
    counter = TokenCounter(tokenizer, 256)
    work = Path(tempfile.mkdtemp(prefix="embedder-pairs-"))
    held = _held_out_queries(work)
    roots = [(Path(sysconfig.get_paths()["stdlib"]), HELD_BACK)]
    if not args.no_packages:
        roots.append((Path(sysconfig.get_paths()["purelib"]), SKIP_PACKAGES))
    pairs, seen = [], set()
    for root, skip in roots:
        for unit in _units(root, skip):
            got = [p for p in pairs_for(root, unit, work, counter, held, args.per_package) if p["query"] not in seen]
            seen.update(p["query"] for p in got)
            pairs.extend(got)
            if got:
                print(f"{root.name}/{unit}: {len(got)} pairs", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    Path(args.output).write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    print(f"{len(pairs)} pairs from {len({p['source'] for p in pairs})} packages -> {args.output} "
          f"({len(held)} benchmark/reranker queries held back)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
