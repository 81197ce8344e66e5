"""Hybrid retrieval: fuse ranked lists (dense, BM25, symbol names) with weighted reciprocal rank fusion.

score(d) = sum over lists L of  weight_L / (k + rank_L(d)),  rank starting at 1.
RRF needs no score calibration between Chroma's cosine and BM25's unbounded scores; the weights and
the depth of each list are settings, tuned on ``bench/retrieval.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result, as the CLI prints it and the agent's tool returns it."""

    path: str
    start_line: int
    end_line: int
    symbol: str
    score: float
    snippet: str
    language: str
    kind: str = ""
    chunk_id: str = ""

    @property
    def location(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def weighted_rrf(rankings: Sequence[tuple[Sequence[str], float]], k: int = 60) -> list[tuple[str, float]]:
    """Fuse ``(ranked ids, weight)`` lists; returns (id, fused score), best first (ties: first seen)."""
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        if weight <= 0:
            continue
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def one_per_symbol(ranked: Sequence[tuple[str, float]], key_of) -> list[tuple[str, float]]:
    """Keep the best-ranked chunk of each (path, symbol): the parts of a long function, or a class's
    pieces, would otherwise fill the list with one definition."""
    seen: set = set()
    out = []
    for item, score in ranked:
        key = key_of(item)
        if key not in seen:
            seen.add(key)
            out.append((item, score))
    return out


def snippet_of(code: str, max_lines: int = 4, width: int = 160) -> str:
    """The first few non-blank lines of a chunk, for a one-glance preview."""
    lines = [line.rstrip()[:width] for line in code.split("\n") if line.strip()]
    return "\n".join(lines[:max_lines])
