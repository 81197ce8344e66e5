"""Retrieval quality on a CI-sized slice of the standard library, and the search API's filters."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from assistant.cli import main
from index import IndexingError, open_index

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_retrieval", REPO / "bench" / "retrieval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_recall_floor_on_stdlib_json_and_http(tmp_path, settings):
    """A broken embedder, tokenizer or fusion drops far below these floors (measured: see PERFORMANCE.md)."""
    bench = _bench()
    queries = bench.make_corpus(["json", "http"], tmp_path / "corpus")
    assert len(queries) > 80
    idx = open_index(tmp_path / "corpus", settings)
    idx.update()
    lists, chunks = bench.evaluate(idx, queries)
    reranker = idx.reranker
    inputs = bench.rerank_inputs(idx, queries, lists, chunks, settings.rerank_depth)
    reranked = [bench._reranked(reranker, ids, rows, chunks) for ids, rows, _ in inputs]
    table = bench.quality_table(queries, lists, chunks, settings, reranked)
    print({name: round(m["R@10"], 3) for name, m in table.items()})
    # measured here with the code-tuned embedder: dense 0.83, BM25 0.68, RRF 0.86, reranker 0.88 (union of
    # the top-10s: 0.87); the plain all-MiniLM-L6-v2 gave dense 0.76 and RRF 0.80, so a lost or broken
    # adapter fails the first and third floors
    assert table["dense"]["R@10"] >= 0.79
    assert table["lexical"]["R@10"] >= 0.60
    assert table["hybrid (RRF)"]["R@10"] >= 0.82
    assert table["hybrid (RRF)"]["MRR@10"] >= table["lexical"]["MRR@10"] + 0.05
    # the reranker (trained on other packages) must not lose to the fusion it starts from
    assert table["hybrid + learned reranker"]["R@10"] >= table["hybrid (RRF)"]["R@10"]
    assert table["hybrid + learned reranker"]["MRR@10"] >= table["hybrid (RRF)"]["MRR@10"]
    # the API the agent uses returns the reranked list; with rerank off, the fused lists
    for i in (0, 1, 2):
        hits = idx.search(queries[i].text, k=10)
        assert [h.chunk_id for h in hits] == reranked[i][:10]
        assert all(0 < h.score <= 1 for h in hits)
    plain = open_index(tmp_path / "corpus", dataclasses.replace(settings, rerank=False))
    assert [h.chunk_id for h in plain.search(queries[0].text, k=10)] == \
        bench._fuse(bench._ids(lists[0]), settings, chunks)[:10]


@pytest.fixture
def indexed(project, settings):
    idx = open_index(project, settings)
    idx.update()
    return idx


def test_hits_carry_location_symbol_snippet_and_language(indexed):
    hit = indexed.search("area of a rectangle", k=3)[0]
    assert (hit.path, hit.symbol, hit.language) == ("pkg/shapes.py", "rectangle_area", "python")
    assert (hit.start_line, hit.end_line) == (16, 18)
    assert hit.snippet.startswith("def rectangle_area(width, height):")
    assert hit.score > 0


def test_filters_by_path_glob_and_language(indexed):
    hits = indexed.search("todo list items", k=10, lang="javascript")
    assert hits and {h.language for h in hits} == {"javascript"}
    hits = indexed.search("http headers", k=10, path_glob="pkg/net/*")
    assert hits and all(h.path.startswith("pkg/net/") for h in hits)
    hits = indexed.search("http headers", k=10, path_glob="pkg/net")  # a directory prefix works too
    assert hits and all(h.path.startswith("pkg/net/") for h in hits)
    assert indexed.search("anything", k=5, path_glob="nowhere/*") == []
    assert indexed.search("area", k=2) and len(indexed.search("area", k=2)) == 2


def test_identifier_queries_find_the_definition(indexed):
    assert indexed.search("renderTodoList", k=1)[0].symbol == "renderTodoList"
    assert indexed.search("TodoStore add", k=3)[0].path == "web/app.js"
    assert indexed.search("deploy_release", k=1)[0].path == "scripts/deploy.sh"


def test_cli_search_prints_ranked_hits(indexed, project, settings, capsys, monkeypatch):
    (project / ".assistant/settings.toml").write_text(f'[index]\ncache_dir = "{settings.cache_dir}"\n')
    monkeypatch.chdir(project)
    assert main(["search", "parse raw http header lines", "-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("pkg/net/http_client.py:") and "  parse_headers  " in out[0]
    assert out[1].startswith("    def parse_headers(raw):")
    assert main(["search", "circle", "--lang", "py", "--json", "-k", "1"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["language"] == "python" and record["path"] == "pkg/shapes.py"


def test_search_errors_are_one_line(tmp_path, settings, capsys, monkeypatch):
    with pytest.raises(IndexingError, match="no index yet"):
        open_index(tmp_path, settings).search("x")
    monkeypatch.chdir(tmp_path)
    assert main(["search", "x"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["search", "x", "-k", "0"]) == 2
    assert main(["search", "x", "--project", str(tmp_path / "missing")]) == 2
