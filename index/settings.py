"""``IndexSettings``: every knob of the index, with safe defaults.

The CLI builds it from the ``[index]`` table of the settings file; the package itself never
reads settings files, it only takes this dataclass.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from index.errors import IndexingError

BACKENDS = ("onnx-int8", "onnx", "torch")


@dataclasses.dataclass
class IndexSettings:
    # Embedding model: a local sentence-transformers folder; empty means the packaged all-MiniLM-L6-v2.
    model_path: str = ""
    # Merge the shipped code-tuned adapter (index/adapter.py, trained by bench/train_embedder.py) into
    # the packaged model; ignored when model_path names another model. false = plain all-MiniLM-L6-v2.
    code_adapter: bool = True
    # onnx-int8 (fastest on CPU), onnx (exact fp32 via onnxruntime) or torch (sentence-transformers).
    backend: str = "onnx-int8"
    batch_size: int = 16
    # Largest chunk in embedder tokens; 0 means the model's window (256 for all-MiniLM-L6-v2).
    chunk_tokens: int = 0
    # Threads for bulk embedding; 0 means all cores. Single queries always use one thread.
    threads: int = 0
    # Where exported ONNX models are cached; empty means $XDG_CACHE_HOME/assistant/embedders.
    cache_dir: str = ""
    # Chroma server instead of the embedded store under <project>/.assistant/index/.
    chroma_host: str = ""
    chroma_port: int = 8000
    # Collection name; empty means one derived from the project's absolute path.
    collection: str = ""
    # A second vector per function/class: its header and signature line (see indexer.signature_text).
    # Dense recall@10 +3 points, but hybrid only +0.2 for 50% more texts to embed: off by default.
    signature_vectors: bool = False
    # Hybrid retrieval: weighted reciprocal rank fusion (tuned on bench/retrieval.py).
    rrf_k: int = 10
    dense_weight: float = 1.0
    lexical_weight: float = 0.5
    symbol_weight: float = 0.6
    dense_depth: int = 100
    lexical_depth: int = 100
    # A learned reranker (index/rerank.py) orders the union of each list's top rerank_depth instead
    # of RRF alone: hybrid recall@10 +5 points on bench/retrieval.py. false = plain RRF.
    rerank: bool = True
    rerank_depth: int = 50
    # Files: extra gitignore-style patterns, and the largest file indexed.
    ignore: list[str] = dataclasses.field(default_factory=list)
    max_file_bytes: int = 1_000_000
    # Watcher: quiet time before an update runs.
    debounce_ms: int = 300

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise IndexingError(f"unknown embedding backend '{self.backend}'", f"use one of {', '.join(BACKENDS)}")
        for name in ("batch_size", "dense_depth", "lexical_depth", "rrf_k", "max_file_bytes", "rerank_depth"):
            if int(getattr(self, name)) <= 0:
                raise IndexingError(f"index setting {name} must be positive, got {getattr(self, name)}")
        if self.chunk_tokens and not 32 <= int(self.chunk_tokens) <= 8192:
            raise IndexingError(f"chunk_tokens {self.chunk_tokens} is out of range", "use 0 (the model's window) or 32+")
        if not (0 < int(self.chroma_port) < 65536):
            raise IndexingError(f"chroma_port {self.chroma_port} is not a port number", "use 1-65535")
        if min(self.dense_weight, self.lexical_weight, self.symbol_weight) < 0:
            raise IndexingError("fusion weights must be >= 0")
        if not isinstance(self.ignore, list) or not all(isinstance(p, str) for p in self.ignore):
            raise IndexingError("index setting ignore must be a list of patterns")

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "assistant" / "embedders"
