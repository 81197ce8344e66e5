"""Lexical retrieval: BM25 (``bm25s``) over code-aware tokens, kept beside Chroma.

Chroma's local mode has no sparse index, so the BM25 side is rebuilt in memory from the
token strings stored with each chunk in the manifest (tokenizing is the slow part; it is done
once per chunk, when the chunk is created).

Tokens: every identifier is kept whole (``encode_basestring``) and also split into its
snake_case / camelCase words (``encode``, ``basestring``; ``HTTPConnection`` -> ``http``,
``connection``), lower-cased and stemmed (``encoded`` and ``encoding`` both match ``encode``),
minus English and code stop words.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
STOPWORDS = frozenset(["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with", "from", "has", "have", "had", "can", "could", "would", "should", "may", "might", "do", "does", "did", "which", "who", "whom", "whose", "what", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "same", "so", "than", "too", "very", "s", "t", "just", "self", "cls", "def", "return", "none", "true", "false", "pass", "else", "elif", "import", "class", "lambda", "while", "try", "except", "finally", "raise", "with", "yield", "async", "await", "global", "nonlocal", "del", "assert", "var", "let", "const", "function", "new", "void", "int", "str"])


@functools.lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english").stemWord
    except ImportError:  # PyStemmer is a dependency; without it, unstemmed tokens still work
        return lambda word: word


@functools.lru_cache(maxsize=200_000)
def _word_tokens(word: str) -> tuple[str, ...]:
    stem = _stemmer()
    parts = [p.lower() for p in _CAMEL.findall(word.replace("_", " ")) if p]
    lowered = word.lower().strip("_")
    out = []
    if len(parts) > 1 and lowered:
        out.append(lowered)  # the whole identifier, an exact-name match scores high
    for part in parts:
        if part not in STOPWORDS and (len(part) > 1 or part.isdigit()):
            out.append(stem(part))
    if len(parts) == 1 and lowered in STOPWORDS:
        return ()
    return tuple(out)


def code_tokens(text: str) -> list[str]:
    """The BM25 tokens of a text (code or a natural-language query)."""
    out: list[str] = []
    for word in _IDENT.findall(text):
        out.extend(_word_tokens(word))
    return out


class LexicalIndex:
    """BM25 over a fixed list of token strings (one per chunk, space-separated)."""

    def __init__(self, token_strings: Sequence[str]) -> None:
        import bm25s

        self.size = len(token_strings)
        self._model = None
        if self.size:
            corpus = [s.split() or ["\u2205"] for s in token_strings]
            self._model = bm25s.BM25()
            self._model.index(corpus, show_progress=False)
            self._vocab = self._model.vocab_dict

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, score) of the best ``k`` rows with a positive score; ``mask`` (0/1 per row) filters."""
        if self._model is None or k <= 0:
            return []
        tokens = [t for t in code_tokens(query) if t in self._vocab]
        if not tokens:
            return []
        scores = self._model.get_scores(tokens)
        if mask is not None:
            scores = scores * mask
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]
