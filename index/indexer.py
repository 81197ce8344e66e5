"""``CodebaseIndex``: build, update, check and search the index of one project.

On disk, under ``<project>/.assistant/index/``:
  chroma/         the embedded Chroma store (absent when a Chroma server is used)
  manifest.json   files (hash, size, mtime, chunk ids) and chunks (metadata, text, BM25 tokens)
  pending         present while an update is writing to the store
  lock            serializes writers across processes

Crash safety: an update writes new chunks to the store first (in batches, so work survives a
kill), then deletes stale ones, then commits the manifest atomically. Chunk ids are content
hashes, and every update reconciles the manifest's wanted set with the ids the store really
holds, so a run after a SIGKILL re-embeds nothing it already stored and removes what no file
needs any more; until then ``status()`` says the index is stale.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text
from index.chunking import CHUNKER_VERSION, Chunk, chunk_source
from index.errors import IndexingError
from index.files import Scanner, decode_source, language_of
from index.lexical import LexicalIndex, code_tokens
from index.rerank import Reranker, chunk_facts, feature_rows, idf_table
from index.retrieve import Hit, one_per_symbol, snippet_of, weighted_rrf
from index.settings import IndexSettings

MANIFEST_VERSION = 1
EMBED_GROUP = 256  # chunks embedded and stored per step (the unit of work a kill can lose)


@dataclasses.dataclass
class Progress:
    """Reported during an update: ``stage`` is 'scan' (files) or 'embed' (chunks)."""

    stage: str
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


@dataclasses.dataclass
class UpdateSummary:
    files: int = 0               # files indexed after the update
    changed: int = 0             # files (re)chunked this time
    removed: int = 0             # files dropped from the index
    chunks: int = 0              # chunks in the index after the update
    embedded: int = 0            # texts sent through the embedding model (chunks and signature views)
    deleted: int = 0             # chunks deleted from the store
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0

    def line(self) -> str:
        text = (f"indexed {self.files} files ({self.changed} changed, {self.removed} removed): "
                f"{self.chunks} chunks, {self.embedded} embedded, {self.deleted} deleted in {self.seconds:.1f}s")
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


@dataclasses.dataclass
class IndexStatus:
    state: str                   # "none", "fresh" or "stale"
    files: int = 0
    chunks: int = 0
    changed: int = 0             # files added or modified since the last update
    removed: int = 0
    interrupted: bool = False    # the last update was killed mid-way
    updated_at: float | None = None

    def line(self) -> str:
        if self.state == "none":
            return "no index (run `assistant index .`)"
        text = f"{self.state}: {self.files} files, {self.chunks} chunks"
        if self.state == "stale":
            reasons = []
            if self.changed:
                reasons.append(f"{self.changed} files changed")
            if self.removed:
                reasons.append(f"{self.removed} removed")
            if self.interrupted:
                reasons.append("last update was interrupted")
            text += " (" + ", ".join(reasons) + ")"
        return text


def _empty_manifest() -> dict:
    return {"version": MANIFEST_VERSION, "files": {}, "chunks": {}}


# chunk record fields in the manifest (a list per chunk keeps the file small)
_FIELDS = ("path", "language", "symbol", "kind", "start", "end", "hash", "text", "tokens")


def _record(chunk: Chunk) -> list:
    # BM25 tokens: the header (path and qualified name) counts twice, names matter most in code search
    header = chunk.text.split("\n", 1)[0]
    tokens = code_tokens(chunk.text) + code_tokens(header)
    return [chunk.path, chunk.language, chunk.symbol, chunk.kind, chunk.start_line, chunk.end_line,
            chunk.hash, chunk.text, " ".join(tokens)]


SIGNATURE = "~sig"  # id suffix of a chunk's second vector


def signature_text(record: list) -> str | None:
    """A definition's short view (header + its ``def``/``class``/``function`` line), embedded as a second
    vector: a query that paraphrases what a function does often matches its name and parameters better
    than its whole body (dense recall@10 +3 points on bench/retrieval.py, hybrid +0.2, so it is
    opt-in: ``signature_vectors``). None for other chunks."""
    header, _, code = record[7].partition("\n")
    if not record[2] or record[3] not in ("function", "class") or "(part " in header:
        return None
    lines = [line.strip() for line in code.split("\n") if line.strip()]
    if len(lines) <= 2:  # the whole chunk is about as short as its signature
        return None
    first = next((line for line in lines if not line.startswith(("@", "#", "//", "/*", "*"))), None)
    return f"{header}\n{first}" if first else None


def _vectors(cid: str, record: list, with_signature: bool) -> list[tuple[str, str]]:
    """(vector id, text) of what the store holds for one chunk."""
    out = [(cid, record[7])]
    if with_signature:
        sig = signature_text(record)
        if sig:
            out.append((cid + SIGNATURE, sig))
    return out


def _chunk_id(vector_id: str) -> str:
    return vector_id.removesuffix(SIGNATURE)


def _metadata(record: list) -> dict:
    path, language, symbol, kind, start, end, digest = record[:7]
    return {"path": path, "language": language, "symbol": symbol, "kind": kind,
            "start_line": start, "end_line": end, "hash": digest}


class CodebaseIndex:
    """The index of one project directory. Thread-safe; one writer per project across processes."""

    def __init__(self, project: str | os.PathLike, settings: IndexSettings | None = None) -> None:
        root = Path(project).expanduser()
        if not root.exists():
            raise IndexingError(f"{root} does not exist", "give the project's directory")
        if not root.is_dir():
            raise IndexingError(f"{root} is not a directory", "give the project's directory, e.g. `.`")
        self.root = root.resolve()
        self.settings = settings or IndexSettings()
        self.index_dir = self.root / ".assistant" / "index"
        self.manifest_path = self.index_dir / "manifest.json"
        self.pending_path = self.index_dir / "pending"
        self.scanner = Scanner(self.root, self.settings.ignore, self.settings.max_file_bytes)
        self._lock = threading.RLock()          # one update at a time in this process
        self._state_lock = threading.Lock()     # searches never wait for an update to finish
        self._embedder = None
        self._store = None
        self._search_state = None  # (manifest mtime, ids, records, lexical, symbol index, paths)
        self._rerank_cache = None  # (manifest mtime, chunk facts, idf table)
        self._reranker = None

    # ------------------------------------------------------------------ parts, loaded on first use
    @property
    def embedder(self):
        if self._embedder is None:
            from index.embedding import get_embedder

            self._embedder = get_embedder(self.settings)
        return self._embedder

    @property
    def store(self):
        if self._store is None:
            from index.store import ChunkStore

            self._store = ChunkStore(self.root, self.index_dir, self.settings, self.embedder.model_id)
        return self._store

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    # ------------------------------------------------------------------ manifest
    def _load_manifest(self, strict: bool) -> dict | None:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("files"), dict) \
                    or not isinstance(data.get("chunks"), dict):
                raise TypeError("unexpected layout")
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            if strict:
                raise IndexingError(f"the index manifest {self.manifest_path} is unreadable ({exc})",
                                    "rebuild it with `assistant index . --rebuild`") from exc
            return None

    def _compatible(self, manifest: dict) -> str | None:
        """Why an existing manifest cannot be updated in place (None when it can)."""
        from index.store import chroma_version, collection_name

        if manifest.get("version") != MANIFEST_VERSION:
            return "the index format changed"
        if manifest.get("chunker") != CHUNKER_VERSION or manifest.get("chunk_tokens") != self.settings.chunk_tokens:
            return "the chunker changed"
        if manifest.get("model") != self.embedder.model_id:
            return "the embedding model changed"
        if manifest.get("collection") != collection_name(self.root, self.settings):
            return "the collection changed"
        written_by = manifest.get("chroma", "")
        if not self.settings.chroma_host and written_by.split(".")[:2] != chroma_version().split(".")[:2]:
            raise IndexingError(f"the index was written by chromadb {written_by or 'unknown'}, "
                                f"this is chromadb {chroma_version()}",
                                "rebuild it with `assistant index . --rebuild`")
        return None

    # ------------------------------------------------------------------ update
    @contextlib.contextmanager
    def _writer_lock(self):
        import fcntl

        self.index_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.index_dir / "lock", "a+") as handle:
            deadline = time.monotonic() + 60
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise IndexingError("another process has been updating this index for a minute",
                                            "wait for it (or stop it) and try again") from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def update(self, paths: Iterable[str | os.PathLike] | None = None, progress: ProgressFn | None = None,
               rebuild: bool = False) -> UpdateSummary:
        """Bring the index up to date: all files, or only ``paths`` (files or directories) and what
        the manifest had under them. Re-embeds only chunks whose text changed."""
        started = time.monotonic()
        from index.store import chroma_version, collection_name

        embedder = self.embedder
        with self._writer_lock():
            if rebuild:  # start from nothing, even from a store this chromadb cannot open
                with contextlib.suppress(FileNotFoundError):
                    self.manifest_path.unlink()
                try:
                    self.store.drop()
                except IndexingError:
                    if self.settings.chroma_host:
                        raise
                    from index.store import forget_clients

                    self._store = None
                    forget_clients()
                    shutil.rmtree(self.index_dir / "chroma", ignore_errors=True)
            manifest = self._load_manifest(strict=False)
            if rebuild or (manifest is not None and self._compatible(manifest) is not None):
                self.store.drop()  # vectors of another model, chunker or format: start over
                manifest = None
            fresh_start = manifest is None
            if fresh_start:  # (a first run killed mid-way resumes: the store keeps what it stored)
                manifest = _empty_manifest()
                paths = None
            rel_paths = None if paths is None else self._relative(paths)
            if rel_paths is not None and ".gitignore" in {p.rsplit("/", 1)[-1] for p in rel_paths}:
                rel_paths = None  # ignore rules changed: look at everything again
            summary = UpdateSummary()
            scan = self.scanner.scan(rel_paths)
            summary.skipped.update(scan.skipped)
            old_files: dict = manifest["files"]
            old_chunks: dict = manifest["chunks"]
            seen = {f.rel for f in scan.files}
            if rel_paths is None:
                gone = [rel for rel in old_files if rel not in seen]
            else:
                gone = [rel for rel in old_files if rel not in seen and _under_any(rel, rel_paths)]
            new_files = dict(old_files)
            fresh: dict[str, list] = {}      # id -> record, for files chunked this time
            for rel in gone:
                new_files.pop(rel, None)
            summary.removed = len(gone)
            counter = embedder.token_counter(self.settings.chunk_tokens)
            for number, info in enumerate(scan.files, start=1):
                if progress:
                    progress(Progress("scan", number, len(scan.files)))
                entry = old_files.get(info.rel)
                if entry and entry["size"] == info.size and entry["mtime_ns"] == info.mtime_ns:
                    continue
                try:
                    data = info.path.read_bytes()
                except OSError:
                    summary.skipped["unreadable"] += 1
                    if entry:
                        new_files.pop(info.rel, None)
                        summary.removed += 1
                    continue
                digest = hashlib.sha1(data).hexdigest()
                if entry and entry["sha"] == digest:
                    new_files[info.rel] = {**entry, "size": info.size, "mtime_ns": info.mtime_ns}
                    continue
                text, why = decode_source(data)
                if text is None:
                    summary.skipped[why] += 1
                    if entry:
                        new_files.pop(info.rel, None)
                        summary.removed += 1
                    continue
                language = language_of(info.rel, data[:128]) or "text"
                chunks = chunk_source(info.rel, text, language, counter)
                for chunk in chunks:
                    fresh[chunk.id] = _record(chunk)
                new_files[info.rel] = {"sha": digest, "size": info.size, "mtime_ns": info.mtime_ns,
                                       "chunks": [c.id for c in chunks]}
                summary.changed += 1
            wanted_ids = {cid for entry in new_files.values() for cid in entry["chunks"]}
            records = {cid: fresh.get(cid) or old_chunks.get(cid) for cid in wanted_ids}
            missing = [cid for cid, rec in records.items() if rec is None]
            if missing:  # a manifest that lost records: rechunk everything next time round
                raise IndexingError("the index manifest is inconsistent", "run `assistant index . --rebuild`")
            nothing_changed = not summary.changed and not gone and not self.pending_path.exists() \
                and new_files.keys() == old_files.keys()
            if nothing_changed and not fresh_start and self.store.count() == manifest.get("vectors"):
                if new_files != old_files:  # only stat changes (touch): commit them
                    manifest["files"] = new_files
                    atomic_write_text(self.manifest_path, json.dumps(manifest))
                summary.files, summary.chunks = len(new_files), len(records)
                summary.seconds = time.monotonic() - started
                return summary
            stored = self.store.ids()
            wanted: dict[str, tuple[str, str]] = {}   # vector id -> (chunk id, text)
            for cid in wanted_ids:
                for vid, text in _vectors(cid, records[cid], self.settings.signature_vectors):
                    wanted[vid] = (cid, text)
            to_embed = [vid for vid in wanted if vid not in stored]
            to_delete = stored - wanted.keys()
            to_relabel = [vid for vid, (cid, _) in wanted.items()
                          if vid in stored and cid in fresh and old_chunks.get(cid, [None] * 7)[:7] != fresh[cid][:7]]
            atomic_write_text(self.pending_path, json.dumps({"started": time.time(), "pid": os.getpid()}))
            to_embed.sort(key=lambda vid: (records[wanted[vid][0]][0], records[wanted[vid][0]][4], vid))
            embedded = [0]

            def tick(n: int) -> None:
                embedded[0] += n
                if progress:
                    progress(Progress("embed", embedded[0], len(to_embed)))

            for start in range(0, len(to_embed), EMBED_GROUP):
                group = to_embed[start:start + EMBED_GROUP]
                texts = [wanted[vid][1] for vid in group]
                vectors = embedder.embed_documents(texts, progress=tick)
                self.store.upsert(group, vectors, texts, [_metadata(records[wanted[vid][0]]) for vid in group])
            summary.embedded = len(to_embed)
            if to_relabel:
                self.store.update_metadata(to_relabel, [_metadata(records[wanted[vid][0]]) for vid in to_relabel])
            if to_delete:
                self.store.delete(to_delete)
            summary.deleted = len(to_delete)
            manifest.update({
                "version": MANIFEST_VERSION, "chunker": CHUNKER_VERSION, "chunk_tokens": self.settings.chunk_tokens,
                "model": embedder.model_id,
                "chroma": chroma_version(), "collection": collection_name(self.root, self.settings),
                "store": f"{self.settings.chroma_host}:{self.settings.chroma_port}" if self.settings.chroma_host
                else "local",
                "updated": time.time(), "vectors": len(wanted), "files": new_files, "chunks": records,
            })
            atomic_write_text(self.manifest_path, json.dumps(manifest))
            with contextlib.suppress(FileNotFoundError):
                self.pending_path.unlink()
            summary.files, summary.chunks = len(new_files), len(records)
            summary.seconds = time.monotonic() - started
            return summary

    def _relative(self, paths: Iterable[str | os.PathLike]) -> list[str] | None:
        out = []
        for p in paths:
            full = Path(p)
            full = full if full.is_absolute() else self.root / full
            try:
                rel = os.path.relpath(os.path.abspath(full), self.root)
            except ValueError:
                continue
            if rel == ".":
                return None  # the whole project
            if not rel.startswith(".."):
                out.append(Path(rel).as_posix())
        return out

    # ------------------------------------------------------------------ status
    def status(self) -> IndexStatus:
        """Whether the index exists and matches the files on disk (stat only, no hashing)."""
        manifest = self._load_manifest(strict=False)
        if manifest is None:
            return IndexStatus("none")
        scan = self.scanner.scan()
        files = manifest["files"]
        seen = {f.rel: f for f in scan.files}
        changed = sum(1 for rel, f in seen.items()
                      if rel not in files or (files[rel]["size"], files[rel]["mtime_ns"]) != (f.size, f.mtime_ns))
        removed = sum(1 for rel in files if rel not in seen)
        interrupted = self.pending_path.exists()
        state = "stale" if (changed or removed or interrupted) else "fresh"
        return IndexStatus(state, len(files), len(manifest["chunks"]), changed, removed, interrupted,
                           manifest.get("updated"))

    # ------------------------------------------------------------------ search
    def _state(self):
        try:
            stamp = self.manifest_path.stat().st_mtime_ns
        except FileNotFoundError:
            raise IndexingError(f"{self.root} has no index yet", "run `assistant index .` there first") from None
        with self._state_lock:
            if self._search_state is None or self._search_state[0] != stamp:
                manifest = self._load_manifest(strict=True)
                self._compatible_for_search(manifest)
                ids = list(manifest["chunks"])
                records = [manifest["chunks"][cid] for cid in ids]
                lexical = LexicalIndex([r[8] for r in records])
                symbols = LexicalIndex([" ".join(code_tokens(r[0] + " " + r[2])) for r in records])
                paths = np.array([r[0] for r in records], dtype=object)
                vector_ids = [[vid for vid, _ in _vectors(cid, rec, self.settings.signature_vectors)]
                              for cid, rec in zip(ids, records)]
                position = {cid: i for i, cid in enumerate(ids)}
                self._search_state = (stamp, ids, records, lexical, symbols, paths, vector_ids, position)
            return self._search_state

    def _compatible_for_search(self, manifest: dict) -> None:
        if manifest.get("model") != self.embedder.model_id:
            raise IndexingError("the index was built with another embedding model or backend",
                                "run `assistant index .` to update it")

    def search(self, query: str, k: int = 10, path_glob: str | None = None,
               lang: str | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (hybrid: dense + BM25 + symbol names, fused by RRF)."""
        if not query or not query.strip():
            raise IndexingError("empty search query", "say what you are looking for")
        if k <= 0:
            raise IndexingError(f"k must be positive, got {k}")
        _, ids, records, lexical, symbols, paths, vector_ids, position = self._state()
        if not ids:
            return []
        s = self.settings
        mask = None
        allowed_ids = None
        where = {"language": lang} if lang else None
        if path_glob or lang:
            keep = np.ones(len(ids), dtype=bool)
            if path_glob:
                keep &= np.array([_glob_match(p, path_glob) for p in paths], dtype=bool)
            if lang:
                keep &= np.array([r[1] == lang for r in records], dtype=bool)
            if not keep.any():
                return []
            mask = keep.astype(np.float32)
            if path_glob:
                allowed_ids = [vid for i in np.flatnonzero(keep) for vid in vector_ids[i]]
        dense = self._dense(self.embedder.embed_query(query), max(k, s.dense_depth), where, allowed_ids) \
            if s.dense_weight > 0 or s.rerank else []
        lexical_hits = [(ids[i], sc) for i, sc in lexical.search(query, max(k, s.lexical_depth), mask)]
        symbol_hits = [(ids[i], sc) for i, sc in symbols.search(query, max(k, s.lexical_depth), mask)]
        if s.rerank:
            facts, idf = self._rerank_state()
            candidates, rows = feature_rows(query, dense, lexical_hits, symbol_hits, facts, idf, s.rerank_depth)
            ranked = self.reranker.rank(candidates, rows)
        else:
            ranked = weighted_rrf([([c for c, _ in dense], s.dense_weight),
                                   ([c for c, _ in lexical_hits], s.lexical_weight),
                                   ([c for c, _ in symbol_hits], s.symbol_weight)], s.rrf_k)
        # ids in the store but not in the manifest (an interrupted update) are skipped
        fused = [(cid, score) for cid, score in ranked if cid in position]
        fused = one_per_symbol(fused, lambda cid: _symbol_key(cid, records[position[cid]]))[:k]
        hits = []
        for cid, score in fused:
            rec = records[position[cid]]
            code = rec[7].split("\n", 1)[1] if "\n" in rec[7] else ""
            hits.append(Hit(rec[0], rec[4], rec[5], rec[2], round(score, 6), snippet_of(code), rec[1], rec[3], cid))
        return hits

    def scored_lists(self, query: str, depth: int) -> dict[str, list[tuple[str, float]]]:
        """Each retriever's own ranking as (id, score), for benchmarks, fusion tuning and the reranker."""
        _, ids, _, lexical, symbols, *_ = self._state()
        return {
            "dense": self._dense(self.embedder.embed_query(query), depth),
            "lexical": [(ids[i], sc) for i, sc in lexical.search(query, depth)],
            "symbol": [(ids[i], sc) for i, sc in symbols.search(query, depth)],
        }

    def ranked_lists(self, query: str, depth: int) -> dict[str, list[str]]:
        """Each retriever's own ranking (ids)."""
        return {name: [cid for cid, _ in hits] for name, hits in self.scored_lists(query, depth).items()}

    @property
    def reranker(self):
        if self._reranker is None:
            self._reranker = Reranker.load()
        return self._reranker

    def _rerank_state(self):
        """Per-chunk facts and the project's IDF table, built once per index state."""
        state = self._state()
        with self._state_lock:
            if self._rerank_cache is None or self._rerank_cache[0] != state[0]:
                records = state[2]
                facts = {cid: chunk_facts(rec) for cid, rec in zip(state[1], records)}
                self._rerank_cache = (state[0], facts, idf_table([r[8] for r in records]))
            return self._rerank_cache[1], self._rerank_cache[2]

    def _dense(self, vector, depth: int, where: dict | None = None,
               ids: list[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine) by each chunk's best vector (full text or signature view)."""
        out: dict[str, float] = {}
        for vid, sim in self.store.query(vector, depth * 2, where=where, ids=ids):
            out.setdefault(_chunk_id(vid), sim)
            if len(out) >= depth:
                break
        return list(out.items())

    def chunk(self, chunk_id: str) -> dict | None:
        """A chunk's metadata and text by id."""
        _, ids, records, *_ = self._state()
        try:
            rec = records[ids.index(chunk_id)]
        except ValueError:
            return None
        return dict(zip(_FIELDS, rec))

    # ------------------------------------------------------------------ watching
    def watcher(self, on_update: Callable[[UpdateSummary], None] | None = None,
                on_error: Callable[[Exception], None] | None = None):
        """An ``IndexWatcher`` that keeps this index fresh (start()/stop())."""
        from index.watch import IndexWatcher

        return IndexWatcher(self, on_update=on_update, on_error=on_error)


def _symbol_key(cid: str, record: list):
    """Chunks of one definition share a key; module-level chunks are each their own."""
    return (record[0], record[2]) if record[2] else cid


def _under_any(rel: str, prefixes: list[str]) -> bool:
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in prefixes)


def _glob_match(path: str, pattern: str) -> bool:
    """Shell-style match on the relative path; a pattern without wildcards matches a directory prefix."""
    pattern = pattern.strip().lstrip("./") if pattern.startswith("./") else pattern.strip()
    if not any(ch in pattern for ch in "*?["):
        return path == pattern or path.startswith(pattern.rstrip("/") + "/")
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern.rstrip("/") + "/*") \
        or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)


def open_index(project: str | os.PathLike, settings: IndexSettings | None = None) -> CodebaseIndex:
    """The index of ``project`` (it may not exist yet: see ``status()``/``update()``)."""
    return CodebaseIndex(project, settings)
