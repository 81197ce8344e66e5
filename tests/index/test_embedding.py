"""The embedder: offline, unit vectors, and the fast ONNX backends stay close to sentence-transformers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from index import IndexingError, IndexSettings
from index.embedding import Embedder, get_embedder

TEXTS = [
    "# json/decoder.py::JSONDecoder.decode\ndef decode(self, s, _w=WHITESPACE.match):\n    obj, end = self.raw_decode(s)",
    "# http/client.py::HTTPConnection.request\ndef request(self, method, url, body=None, headers={}):",
    "Return the current time according to the event loop's clock.",
    "x",
]


def test_backends_agree_with_sentence_transformers(settings):
    reference = Embedder(dataclasses.replace(settings, backend="torch")).embed_documents(TEXTS)
    fp32 = get_embedder(dataclasses.replace(settings, backend="onnx")).embed_documents(TEXTS)
    int8 = get_embedder(settings).embed_documents(TEXTS)
    assert reference.shape == fp32.shape == int8.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert (reference * fp32).sum(1).min() > 0.9999
    assert (reference * int8).sum(1).min() > 0.95  # int8: a small, measured loss (see PERFORMANCE.md)


def test_query_path_matches_the_batch_path(settings):
    embedder = get_embedder(settings)
    batch = embedder.embed_documents(TEXTS)
    for text, vector in zip(TEXTS, batch):
        # int8 activations are quantized per batch, so a text's vector depends slightly on its batch-mates
        assert float(embedder.embed_query(text) @ vector) > 0.97
    counted = embedder.texts_embedded
    embedder.embed_documents(TEXTS[:2])
    assert embedder.texts_embedded == counted + 2


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(IndexingError, match="no embedding model at"):
        Embedder(IndexSettings(model_path=str(tmp_path / "nothing"), cache_dir=str(tmp_path)))
