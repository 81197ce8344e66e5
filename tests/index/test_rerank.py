"""The learned reranker: its shipped weights, its features, and that fitting learns what ranks."""

from __future__ import annotations

import numpy as np

from index.rerank import FEATURE_NAMES, Reranker, chunk_facts, feature_rows, fit, idf_table


def _record(path, symbol, kind, text):
    from index.lexical import code_tokens

    return [path, "python", symbol, kind, 1, 3, "h", text, " ".join(code_tokens(text))]


RECORDS = {
    "a": _record("pkg/files.py", "read_config", "function",
                 "# pkg/files.py::read_config\ndef read_config(path, strict=False):\n    return load(path)"),
    "b": _record("pkg/net.py", "Client", "class", "# pkg/net.py::Client\nclass Client:\n    pass"),
    "c": _record("pkg/net.py", "Client._send", "function",
                 "# pkg/net.py::Client._send (part 2)\n    def _send(self, data):\n        self.sock.send(data)"),
}


def test_the_shipped_weights_fit_the_features_and_score_finitely():
    reranker = Reranker.load()
    assert reranker.weights.shape == (len(FEATURE_NAMES),)
    assert reranker.info.get("trained_on") and "json" not in reranker.info["trained_on"]
    facts = {cid: chunk_facts(rec) for cid, rec in RECORDS.items()}
    ids, rows = feature_rows("Read the ``path`` config file", [("a", 0.6), ("c", 0.2)], [("a", 3.0)], [],
                             facts, idf_table([r[8] for r in RECORDS.values()]), depth=50)
    assert ids == ["a", "c"] and rows.shape == (2, len(FEATURE_NAMES)) and np.isfinite(rows).all()
    ranked = reranker.rank(ids, rows)
    assert ranked[0][0] == "a"
    assert abs(sum(p for _, p in ranked) - 1) < 1e-9


def test_features_read_names_arguments_quotes_and_parts():
    facts = {cid: chunk_facts(rec) for cid, rec in RECORDS.items()}
    assert facts["c"].first_part is False and facts["a"].first_part is True
    assert facts["c"].private and not facts["a"].private
    idf = idf_table([r[8] for r in RECORDS.values()])
    ids, rows = feature_rows("Read the ``path`` config", [], [], [("a", 1.0), ("b", 0.5)], facts, idf, depth=50)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    a, b = rows[ids.index("a")], rows[ids.index("b")]
    assert a[col["name_share_of_query"]] > 0 and b[col["name_share_of_query"]] == 0
    assert a[col["args_share_of_query"]] > 0 and a[col["quoted_code_found"]] == 1.0
    assert a[col["verb_matches_name"]] == 1.0 and b[col["kind_class"]] == 1.0
    assert a[col["symbol_relative"]] == 1.0 and b[col["symbol_relative"]] == 0.5


def test_fit_learns_which_feature_marks_the_answer():
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(60):
        rows = rng.normal(size=(20, len(FEATURE_NAMES)))
        labels = np.zeros(20)
        answer = int(rng.integers(20))
        rows[answer, 3] += 5.0  # feature 3 tells the answer; the others are noise
        labels[answer] = 1.0
        examples.append((rows, labels))
    reranker = fit(examples[:40])
    assert int(np.argmax(np.abs(reranker.weights))) == 3 and reranker.weights[3] > 0
    hits = sum(reranker.rank([str(i) for i in range(20)], rows)[0][0] == str(int(labels.argmax()))
               for rows, labels in examples[40:])
    assert hits >= 18  # far above chance (1 in 20)
