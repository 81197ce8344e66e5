"""The dense store: one Chroma collection of chunks with precomputed embeddings, cosine space.

Embedded (``chromadb.PersistentClient`` under ``<project>/.assistant/index/chroma``) by default, or
a Chroma server (``chroma_host``/``chroma_port``) for large or shared codebases. Chroma never embeds
anything itself (``embedding_function=None``): its default embedder would download weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from index.errors import IndexingError
from index.settings import IndexSettings

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
for _name in ("chromadb.telemetry", "chromadb.telemetry.product.posthog"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

REBUILD_HINT = "delete it and rebuild with `assistant index . --rebuild`"


def chroma_version() -> str:
    import chromadb

    return chromadb.__version__


def collection_name(project: Path, settings: IndexSettings) -> str:
    if settings.collection:
        return settings.collection
    digest = hashlib.sha1(str(project.resolve()).encode()).hexdigest()[:12]
    return f"assistant-{digest}"


class ChunkStore:
    """Chunks as (id, embedding, document, metadata) in one Chroma collection."""

    def __init__(self, project: Path, index_dir: Path, settings: IndexSettings, model_id: str) -> None:
        import chromadb
        from chromadb.config import Settings

        self.name = collection_name(project, settings)
        self.model_id = model_id
        client_settings = Settings(anonymized_telemetry=False, allow_reset=True)
        try:
            if settings.chroma_host:
                self.where = f"Chroma server {settings.chroma_host}:{settings.chroma_port}"
                self.client = chromadb.HttpClient(host=settings.chroma_host, port=int(settings.chroma_port),
                                                  settings=client_settings)
                self.client.heartbeat()
            else:
                path = index_dir / "chroma"
                self.where = str(path)
                path.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=str(path), settings=client_settings)
        except IndexingError:
            raise
        except Exception as exc:
            if settings.chroma_host:
                raise IndexingError(f"cannot reach the Chroma server at {settings.chroma_host}:"
                                    f"{settings.chroma_port}: {_short(exc)}",
                                    "start it (`chroma run --path DIR --port N`) or drop --chroma-host") from exc
            raise IndexingError(f"cannot open the Chroma store at {index_dir / 'chroma'}: {_short(exc)}",
                                f"it may have been written by another chromadb version; {REBUILD_HINT}") from exc
        self._collection = None

    # ------------------------------------------------------------------ collection
    def collection(self, create: bool = True):
        if self._collection is None:
            try:
                if create:
                    self._collection = self.client.get_or_create_collection(
                        self.name, embedding_function=None,
                        metadata={"hnsw:space": "cosine", "model": self.model_id},
                    )
                else:
                    self._collection = self.client.get_collection(self.name, embedding_function=None)
            except Exception as exc:
                raise IndexingError(f"cannot open collection {self.name} in {self.where}: {_short(exc)}",
                                    REBUILD_HINT) from exc
            stored_model = (self._collection.metadata or {}).get("model")
            if stored_model and stored_model != self.model_id:
                raise IndexingError(f"collection {self.name} holds vectors of another embedding model",
                                    REBUILD_HINT)
        return self._collection

    def drop(self) -> None:
        """Delete the collection (a rebuild, or a changed model)."""
        with contextlib.suppress(Exception):  # absent already
            self.client.delete_collection(self.name)
        self._collection = None

    # ------------------------------------------------------------------ reads
    def ids(self) -> set[str]:
        coll = self.collection()
        out: set[str] = set()
        total = coll.count()
        step = 5000
        for offset in range(0, total, step):
            out.update(coll.get(include=[], limit=step, offset=offset)["ids"])
        return out

    def id_hashes(self) -> set[tuple[str, str]]:
        """Every (id, content hash) pair stored: what the tests compare with a fresh index."""
        coll = self.collection()
        out: set[tuple[str, str]] = set()
        total = coll.count()
        for offset in range(0, total, 5000):
            got = coll.get(include=["metadatas"], limit=5000, offset=offset)
            out.update((i, m["hash"]) for i, m in zip(got["ids"], got["metadatas"]))
        return out

    def count(self) -> int:
        return self.collection().count()

    def query(self, vector: np.ndarray, n: int, where: dict | None = None,
              ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """(id, cosine similarity) of the ``n`` nearest chunks."""
        coll = self.collection()
        n = min(n, coll.count())
        if n <= 0:
            return []
        kwargs = {"query_embeddings": [vector.tolist()], "n_results": n, "include": ["distances"]}
        if where:
            kwargs["where"] = where
        if ids is not None:
            if not ids:
                return []
            kwargs["ids"] = list(ids)
            kwargs["n_results"] = min(n, len(ids))
        try:
            result = coll.query(**kwargs)
        except Exception as exc:
            raise IndexingError(f"Chroma query failed: {_short(exc)}", REBUILD_HINT) from exc
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0])]

    # ------------------------------------------------------------------ writes
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, documents: Sequence[str],
               metadatas: Sequence[dict]) -> None:
        coll = self.collection()
        step = self._batch()
        for start in range(0, len(ids), step):
            end = start + step
            coll.upsert(ids=list(ids[start:end]), embeddings=vectors[start:end],
                        documents=list(documents[start:end]), metadatas=list(metadatas[start:end]))

    def update_metadata(self, ids: Sequence[str], metadatas: Sequence[dict]) -> None:
        coll = self.collection()
        step = self._batch()
        for start in range(0, len(ids), step):
            coll.update(ids=list(ids[start:start + step]), metadatas=list(metadatas[start:start + step]))

    def delete(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        coll = self.collection()
        step = self._batch()
        for start in range(0, len(ids), step):
            coll.delete(ids=ids[start:start + step])

    def _batch(self) -> int:
        try:
            return max(1, min(5000, int(self.client.get_max_batch_size())))
        except Exception:  # noqa: BLE001
            return 1000


def forget_clients() -> None:
    """Chroma caches one client per path in a process; drop them before a store is deleted from disk."""
    with contextlib.suppress(Exception):  # older/newer layouts: nothing cached to forget
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
