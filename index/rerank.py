"""A learned reranker for hybrid search: a linear model over the candidates of the three lists.

Reciprocal rank fusion only sees ranks. The reranker also sees the scores themselves (the cosine,
BM25 relative to the best hit) and how the query's words meet the candidate's name, arguments, path
and body, weighted by their rarity in the project (IDF). It scores the union of each list's top
``depth`` candidates; RRF's own score is one of its features, so it starts from the fusion and learns
what to add.

The weights (``reranker_weights.json`` beside this file) are learned by ``bench/train_reranker.py``
on standard-library packages that the retrieval benchmark never uses (a listwise softmax loss,
convex, solved with L-BFGS: the same data gives the same weights). Scoring is numpy only: a few
hundred microseconds per query on top of the lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index.lexical import code_tokens

WEIGHTS_PATH = Path(__file__).with_name("reranker_weights.json")
KINDS = ("function", "class", "module", "fragment")
# (first word of the query, first word of the name) pairs that mean the same act
VERB_PAIRS = frozenset({("return", "get"), ("get", "get"), ("set", "set"), ("check", "is"), ("test", "is"),
                        ("create", "make"), ("create", "create"), ("return", "is"), ("add", "add"),
                        ("remove", "remove"), ("close", "close"), ("read", "read"), ("write", "write"),
                        ("parse", "parse")})
FEATURE_NAMES = (
    "dense_cosine", "dense_gap_to_best", "dense_rrf", "bm25_relative", "bm25_rrf", "symbol_relative",
    "symbol_rrf", "fused_rrf", "name_share_of_query", "name_share_of_name", "class_share_of_query",
    "path_share_of_query", "first_part", "log_length", *(f"kind_{k}" for k in KINDS), "private",
    "dunder", "args_share_of_query", "quoted_code_found", "query_quotes_code", "verb_matches_name",
    "cosine_x_name_share", "idf_name_and_args", "idf_coverage",
    "query_asks_an_act", "act_x_function", "act_x_class", "query_names_a_kind_of_thing", "thing_x_class",
)
# A query that starts with a verb asks for something that acts (a function); one that names a kind of
# thing ("Exception raised when ...", "Base class for ...") asks for a class.
ACT_WORDS = frozenset("""return get set create make build check test read write parse add remove convert compute
find handle send close open start stop run call update load save print format encode decode initialize init
register process wait cancel append insert delete clear copy reset apply validate generate yield emit fetch
search match split join strip replace lookup resolve connect listen accept bind flush feed push pop put
serialize deserialize render execute invoke dispatch schedule retry raise ensure determine extract collect
""".split())
THING_WORDS = frozenset("""class exception error base mixin object wrapper interface protocol abstract instance
type container helper manager handler factory representation proxy""".split())
RRF_K = 10
RRF_WEIGHTS = (1.0, 0.5, 0.6)  # the fusion defaults; the feature stays fixed whatever the settings say
_DEF_ARGS = re.compile(r"def\s+\w+\s*\((.*?)\)\s*(?:->|:)", re.S)
_QUOTED = re.compile(r"``([^`]+)``|`([^`]+)`")
_PART = re.compile(r"\(part (\d+)\)")
_NAME_FIRST = re.compile(r"_|(?=[A-Z])")


@dataclasses.dataclass(frozen=True)
class ChunkFacts:
    """What the features need of one chunk, computed once per index state."""

    name: frozenset
    owner: frozenset  # the enclosing class (or module path) of a qualified name
    path: frozenset
    args: frozenset
    tokens: frozenset
    body: str
    first_part: bool
    kind: str
    length: int
    name_first_word: str
    private: bool
    dunder: bool


def chunk_facts(record: Sequence) -> ChunkFacts:
    """``record`` is a manifest row: path, language, symbol, kind, start, end, hash, text, tokens."""
    path, symbol, kind, text, tokens = record[0], record[2] or "", record[3], record[7], record[8]
    header, _, body = text.partition("\n")
    last = symbol.rsplit(".", 1)[-1]
    args = _DEF_ARGS.search(body)
    part = _PART.search(header)
    return ChunkFacts(
        name=frozenset(code_tokens(last)),
        owner=frozenset(code_tokens(symbol.rsplit(".", 1)[0])) if "." in symbol else frozenset(),
        path=frozenset(code_tokens(path)),
        args=frozenset(code_tokens(args.group(1))) if args else frozenset(),
        tokens=frozenset(tokens.split()),
        body=body,
        first_part=part is None or part.group(1) == "1",
        kind=kind,
        length=len(text),
        name_first_word=_NAME_FIRST.split(last.lstrip("_"))[0].lower() if last else "",
        private=last.startswith("_"),
        dunder=last.startswith("__") and last.endswith("__"),
    )


def idf_table(token_strings: Sequence[str]) -> tuple[dict[str, float], float]:
    """log(1 + N / df) for every token of the project's chunks, and the value for an unseen token."""
    df: dict[str, int] = {}
    for text in token_strings:
        for token in set(text.split()):
            df[token] = df.get(token, 0) + 1
    n = max(1, len(token_strings))
    return {t: math.log(1 + n / c) for t, c in df.items()}, math.log(1 + n)


Scored = Sequence[tuple[str, float]]


def feature_rows(query: str, dense: Scored, lexical: Scored, symbol: Scored, facts: dict[str, ChunkFacts],
                 idf: tuple[dict[str, float], float], depth: int) -> tuple[list[str], np.ndarray]:
    """The candidates (each list's top ``depth``, in first-seen order) and their feature matrix.

    The lists are whole rankings (deeper than ``depth`` is fine): a candidate missing from a list
    gets that list's zero, and the dense cosine of the last listed hit minus a margin.
    """
    candidates: dict[str, None] = {}
    for ranked in (dense[:depth], lexical[:depth], symbol[:depth]):
        for cid, _ in ranked:
            if cid in facts:
                candidates.setdefault(cid, None)
    dense_at = {cid: (rank, s) for rank, (cid, s) in enumerate(dense, start=1)}
    lexical_at = {cid: (rank, s) for rank, (cid, s) in enumerate(lexical, start=1)}
    symbol_at = {cid: (rank, s) for rank, (cid, s) in enumerate(symbol, start=1)}
    dense_floor = dense[-1][1] - 0.02 if dense else 0.0
    dense_best = dense[0][1] if dense else 1.0
    lexical_best = max(lexical[0][1], 1e-6) if lexical else 1.0
    symbol_best = max(symbol[0][1], 1e-6) if symbol else 1.0
    idf_of, idf_unseen = idf
    words = set(code_tokens(query))
    n = max(1, len(words))
    weight = sum(idf_of.get(t, idf_unseen) for t in words) or 1.0
    quoted = [a or b for a, b in _QUOTED.findall(query)]
    first = query.split()[0].lower().rstrip("s") if query.split() else ""
    head = query.split()[0].lower().strip(".,:;`'\"()") if query.split() else ""
    act = float(head in ACT_WORDS or (head.endswith("s") and head[:-1] in ACT_WORDS)
                or (head.endswith("es") and head[:-2] in ACT_WORDS))
    thing = float(any(w.lower().strip(".,:;`'\"()") in THING_WORDS for w in query.split()[:4]))

    def rrf(rank):
        return 1.0 / (RRF_K + rank) if rank else 0.0

    rows = []
    ids = list(candidates)
    for cid in ids:
        f = facts[cid]
        rank_d, cos = dense_at.get(cid, (None, dense_floor))
        rank_l, bm25 = lexical_at.get(cid, (None, 0.0))
        rank_s, sym = symbol_at.get(cid, (None, 0.0))
        in_name = len(words & f.name)
        fused = RRF_WEIGHTS[0] * rrf(rank_d) + RRF_WEIGHTS[1] * rrf(rank_l) + RRF_WEIGHTS[2] * rrf(rank_s)
        verb = (first, f.name_first_word) in VERB_PAIRS or (first != "" and first == f.name_first_word)
        rows.append([
            cos, cos - dense_best, 10 * rrf(rank_d), bm25 / lexical_best, 10 * rrf(rank_l), sym / symbol_best,
            10 * rrf(rank_s), 10 * fused, in_name / n, in_name / max(1, len(f.name)), len(words & f.owner) / n,
            len(words & f.path) / n, float(f.first_part), math.log1p(f.length) / 8,
            *(float(f.kind == k) for k in KINDS), float(f.private), float(f.dunder),
            len(words & f.args) / n, sum(1 for q in quoted if q in f.body) / max(1, len(quoted)), float(bool(quoted)),
            float(verb), cos * in_name / n,
            sum(idf_of.get(t, idf_unseen) for t in words & (f.name | f.args)) / weight,
            sum(idf_of.get(t, idf_unseen) for t in words & f.tokens) / weight,
            act, act * (f.kind == "function"), act * (f.kind == "class"), thing, thing * (f.kind == "class"),
        ])
    return ids, np.asarray(rows, dtype=np.float64).reshape(len(ids), len(FEATURE_NAMES))


@dataclasses.dataclass
class Reranker:
    """score = ((features - mean) / std) . weights"""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> Reranker:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if list(data["features"]) != list(FEATURE_NAMES):
            raise ValueError(f"{path} was trained on other features; retrain with bench/train_reranker.py")
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]), np.asarray(data["weights"]), data.get("info", {}))

    def save(self, path: Path = WEIGHTS_PATH) -> None:
        from common.atomic import atomic_write_text

        data = {"features": list(FEATURE_NAMES), "mean": self.mean.round(6).tolist(),
                "std": self.std.round(6).tolist(), "weights": self.weights.round(6).tolist(), "info": self.info}
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")

    def scores(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.std) @ self.weights

    def rank(self, ids: list[str], rows: np.ndarray) -> list[tuple[str, float]]:
        """(id, probability), best first; ties keep the candidates' order.

        The probability is the model's own reading (listwise softmax): the chance that this
        candidate is the one sought, among these candidates."""
        if not ids:
            return []
        scores = self.scores(rows)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        order = sorted(range(len(ids)), key=lambda i: -scores[i])
        return [(ids[i], float(probs[i])) for i in order]


def fit(examples: Sequence[tuple[np.ndarray, np.ndarray]], l2: float = 1e-2,
        query_weights: Sequence[float] | None = None) -> Reranker:
    """Learn the weights from (feature rows, relevance labels) per query, listwise softmax loss.

    The loss is convex in the weights; L-BFGS finds its minimum, so the same examples always give
    the same weights. Queries whose candidates hold no relevant chunk teach nothing and are skipped.
    """
    import torch

    weights = list(query_weights) if query_weights is not None else [1.0] * len(examples)
    usable = [(rows, labels, wq) for (rows, labels), wq in zip(examples, weights) if labels.sum() > 0]
    if not usable:
        raise ValueError("no training query has a relevant candidate")
    stacked = np.concatenate([rows for rows, _, _ in usable])
    mean, std = stacked.mean(0), stacked.std(0) + 1e-6
    data = [(torch.tensor((rows - mean) / std, dtype=torch.float64), torch.tensor(wq * labels / labels.sum()))
            for rows, labels, wq in usable]
    total = sum(wq for _, _, wq in usable)
    w = torch.zeros(len(FEATURE_NAMES), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], lr=1, max_iter=500, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = sum(-(torch.log_softmax(x @ w, 0) * y).sum() for x, y in data) / total + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Reranker(mean, std, w.detach().numpy().copy())
