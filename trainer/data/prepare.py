"""Tokenize a corpus into ``<stage>_train.npy`` / ``<stage>_val.npy`` plus ``<stage>_manifest.json``.

Documents are split into train/val by a seeded draw per document (no document straddles the
split) and joined with ``<|endoftext|>``. Tokens are streamed to temporary files, converted to
``.npy`` (uint16 when the vocabulary fits, else uint32) and renamed into place; the manifest is
written last, so a prepared stage either exists whole or not at all.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np

from common.atomic import atomic_write_text, new_file_mode
from trainer import TrainerError
from trainer.data.corpora import CorpusReport
from trainer.data.tokenizer import TextTokenizer

MANIFEST_VERSION = 1


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65536 else np.uint32


def _raw_to_npy(raw_path: Path, count: int, dtype, final: Path) -> None:
    """Wrap a raw token file in an .npy header and move it into place atomically."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(count,))
        if count:
            src = np.memmap(raw_path, dtype=dtype, mode="r", shape=(count,))
            step = 1 << 24
            for start in range(0, count, step):
                out[start : start + step] = src[start : start + step]
            del src
        out.flush()
        del out
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def prepare_stage(stage: str, documents: Iterator[str], report: CorpusReport, tokenizer: TextTokenizer,
                  output_dir: str | Path, val_fraction: float = 0.05, seed: int = 1337,
                  batch_documents: int = 256) -> dict:
    """Tokenize ``documents`` into the stage's train/val files; return the manifest."""
    if not 0.0 < val_fraction < 1.0:
        raise TrainerError(f"--val-fraction {val_fraction} is out of range", "use a value between 0 and 1, e.g. 0.05")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    rng = np.random.default_rng(seed)
    eos = tokenizer.eos_id
    started = time.time()
    counts = {"train": 0, "val": 0}
    doc_counts = {"train": 0, "val": 0}
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=f".{stage}-prep-") as tmp:
        raw = {split: open(Path(tmp) / f"{split}.bin", "wb") for split in ("train", "val")}
        try:
            batch: list[str] = []

            def flush() -> None:
                for ids in tokenizer.encode_batch(batch):
                    arr = np.asarray(ids + [eos], dtype=dtype)
                    split = "val" if rng.random() < val_fraction else "train"
                    arr.tofile(raw[split])
                    counts[split] += arr.size
                    doc_counts[split] += 1
                batch.clear()

            for doc in documents:
                batch.append(doc)
                if len(batch) >= batch_documents:
                    flush()
            if batch:
                flush()
        finally:
            for handle in raw.values():
                handle.close()
        total = counts["train"] + counts["val"]
        if total <= 1 or doc_counts["train"] + doc_counts["val"] == 0:
            raise TrainerError(f"the {stage} corpus is empty", "check --input: no readable documents were found")
        if counts["val"] == 0 or counts["train"] == 0:
            _rebalance_by_tokens(Path(tmp), counts, dtype, val_fraction)
        for split in ("train", "val"):
            _raw_to_npy(Path(tmp) / f"{split}.bin", counts[split], dtype, output_dir / f"{stage}_{split}.npy")
    manifest = {
        "version": MANIFEST_VERSION,
        "stage": stage,
        "tokenizer_hash": tokenizer.hash,
        "tokenizer_path": str(tokenizer.path) if tokenizer.path else None,
        "vocab_size": tokenizer.vocab_size,
        "dtype": np.dtype(dtype).name,
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
        "documents": doc_counts,
        "val_fraction": val_fraction,
        "seed": seed,
        "sources": [asdict(s) for s in report.sources],
        "skipped": report.skipped,
        "seconds": round(time.time() - started, 2),
    }
    atomic_write_text(output_dir / f"{stage}_manifest.json", json.dumps(manifest, indent=2))
    return manifest


def _rebalance_by_tokens(tmp: Path, counts: dict, dtype, val_fraction: float) -> None:
    """With too few documents for a per-document split, cut the token stream instead."""
    tokens = np.concatenate([np.fromfile(tmp / f"{s}.bin", dtype=dtype) for s in ("train", "val")])
    cut = max(1, min(tokens.size - 1, int(round(tokens.size * (1 - val_fraction)))))
    tokens[:cut].tofile(tmp / "train.bin")
    tokens[cut:].tofile(tmp / "val.bin")
    counts["train"], counts["val"] = cut, tokens.size - cut


def read_manifest(data_dir: str | Path, stage: str) -> dict:
    path = Path(data_dir) / f"{stage}_manifest.json"
    if not path.exists():
        raise TrainerError(
            f"no prepared {stage} data in {data_dir}",
            f"run 'assistant data prepare --stage {stage} --input ...' first",
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainerError(f"{path} is corrupt", f"prepare the {stage} data again") from exc
    return manifest
