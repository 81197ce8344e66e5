"""Fixtures for the index tests: settings with a session-wide embedder cache, small projects."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.index.index_helpers import write_project

from index import IndexSettings


@pytest.fixture(scope="session")
def embedder_cache(tmp_path_factory) -> Path:
    """The ONNX export is made once per test session (a few seconds), not once per test."""
    return tmp_path_factory.mktemp("embedders")


@pytest.fixture
def settings(embedder_cache) -> IndexSettings:
    return IndexSettings(cache_dir=str(embedder_cache), debounce_ms=200)


@pytest.fixture
def project(tmp_path) -> Path:
    return write_project(tmp_path / "project")
