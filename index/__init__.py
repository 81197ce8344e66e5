"""The codebase index: chunking, embedding, Chroma store, BM25, hybrid retrieval, watching.

The API the agent's ``search_codebase`` tool and the TUI use::

    from index import IndexSettings, open_index
    idx = open_index(project, IndexSettings(...))
    idx.status()                       # IndexStatus: none / fresh / stale, counts
    idx.update(progress=callback)      # incremental; returns an UpdateSummary
    idx.search("query", k=10, path_glob="src/**", lang="python")  # list[Hit]
    watcher = idx.watcher(on_update=..., on_error=...).start(); ...; watcher.stop()

Importing this package is cheap: chromadb, onnxruntime and torch load on first use.
"""

from index.errors import IndexingError
from index.indexer import CodebaseIndex, IndexStatus, Progress, UpdateSummary, open_index
from index.retrieve import Hit
from index.settings import IndexSettings

__all__ = ["CodebaseIndex", "Hit", "IndexSettings", "IndexStatus", "IndexingError", "Progress",
           "UpdateSummary", "open_index"]
