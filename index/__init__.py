"""The codebase index: chunking, embedding, Chroma store, BM25, hybrid retrieval, watching."""
