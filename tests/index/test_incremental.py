"""Incremental updates: after edits, the store equals a fresh full index, and only changed chunks
were re-embedded; a SIGKILL mid-update leaves the previous good state and resumes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from tests.index.index_helpers import fresh_id_hashes

from index import open_index

REPO = Path(__file__).resolve().parents[2]


def _embedded(idx) -> int:
    return idx.embedder.texts_embedded


def _mutate_and_check(idx, project, settings, tmp_path, mutate, paths=None):
    """Apply ``mutate``; update; the store must equal a fresh index and only new chunks were embedded."""
    before = idx.store.id_hashes()
    mutate(project)
    expected = fresh_id_hashes(project, settings, tmp_path)
    calls = _embedded(idx)
    summary = idx.update(paths=paths)
    assert idx.store.id_hashes() == expected
    new_chunks = {i for i, _ in expected} - {i for i, _ in before}
    assert _embedded(idx) - calls == len(new_chunks) == summary.embedded
    assert summary.deleted == len({i for i, _ in before} - {i for i, _ in expected})
    assert idx.status().state == "fresh"
    return summary


def _edit_body(project: Path) -> None:
    path = project / "pkg/shapes.py"
    path.write_text(path.read_text().replace("return width * height", "return float(width) * height"))


def _rename_function(project: Path) -> None:
    path = project / "pkg/net/http_client.py"
    path.write_text(path.read_text().replace("def parse_headers(", "def parse_header_lines("))


def _delete_file(project: Path) -> None:
    (project / "scripts/deploy.sh").unlink()


def _atomic_save(project: Path) -> None:
    """What editors do: write a temp file beside the original, then rename it over the original."""
    path = project / "web/app.js"
    tmp = path.with_name(".app.js.swp")
    tmp.write_text(path.read_text().replace("this.items = [];", "this.items = []; this.done = [];"))
    os.replace(tmp, path)


def _move_directory(project: Path) -> None:
    shutil.move(str(project / "pkg/net"), str(project / "pkg/network"))


MUTATIONS = [_edit_body, _rename_function, _delete_file, _atomic_save, _move_directory]


@pytest.mark.parametrize("signature_vectors", [False, True])
def test_each_mutation_reembeds_only_what_changed(project, settings, tmp_path, signature_vectors):
    settings = dataclasses.replace(settings, signature_vectors=signature_vectors)
    idx = open_index(project, settings)
    first = idx.update()
    assert first.files == 7 and first.chunks > 10 and first.embedded >= first.chunks  # + signature views
    assert idx.store.id_hashes() == fresh_id_hashes(project, settings, tmp_path)
    for mutate in MUTATIONS:
        summary = _mutate_and_check(idx, project, settings, tmp_path, mutate)
        assert summary.embedded <= 6, mutate.__name__  # a handful of chunks, never the whole project
    # the renamed function is found under its new name, the old one is gone
    hits = idx.search("split raw HTTP header lines into a dict", k=3)
    assert hits[0].symbol == "parse_header_lines" and hits[0].path == "pkg/network/http_client.py"
    assert all(h.path != "scripts/deploy.sh" for h in idx.search("deploy release with rsync", k=10))


def test_line_numbers_follow_code_that_moved_without_reembedding(project, settings, tmp_path):
    idx = open_index(project, settings)
    idx.update()
    path = project / "pkg/shapes.py"
    path.write_text(path.read_text().replace('import math\n', 'import math\nimport os\nimport sys\n'))
    summary = _mutate_and_check(idx, project, settings, tmp_path, lambda p: None)
    assert summary.embedded == 1  # the module-level chunk with the imports; the class and function shifted
    hit = next(h for h in idx.search("area of a rectangle", k=5) if h.symbol == "rectangle_area")
    lines = path.read_text().split("\n")
    assert lines[hit.start_line - 1].startswith("def rectangle_area")


def test_targeted_update_of_paths_matches_full_update(project, settings, tmp_path):
    idx = open_index(project, settings)
    idx.update()
    _edit_body(project)
    _move_directory(project)
    _mutate_and_check(idx, project, settings, tmp_path, lambda p: None,
                      paths=["pkg/shapes.py", "pkg/net", "pkg/network"])


def test_nothing_changed_is_a_no_op(project, settings):
    idx = open_index(project, settings)
    idx.update()
    calls = _embedded(idx)
    os.utime(project / "pkg/shapes.py")  # touched, same content
    summary = idx.update()
    assert (summary.changed, summary.embedded, summary.deleted) == (0, 0, 0)
    assert _embedded(idx) == calls


def _stored_rows(db: Path) -> int:
    """Rows committed to the Chroma store, read from its SQLite file without opening Chroma (a
    second client in this process must not race the writer's)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)) as conn:
            return conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    except sqlite3.Error:
        return -1


def _stdlib_copy(dest: Path, package: str) -> None:
    shutil.copytree(Path(sysconfig.get_paths()["stdlib"]) / package, dest / package,
                    ignore=shutil.ignore_patterns("__pycache__", "test*"))


def test_sigkill_mid_update_keeps_the_old_index_and_resumes(project, settings, tmp_path):
    idx = open_index(project, settings)
    idx.update()
    manifest_before = (project / ".assistant/index/manifest.json").read_bytes()
    old_ids = idx.store.id_hashes()
    _stdlib_copy(project, "email")  # ~900 new chunks: embedding them takes several seconds
    (project / ".assistant/settings.toml").write_text(f'[index]\ncache_dir = "{settings.cache_dir}"\n')
    store_db = project / ".assistant/index/chroma/chroma.sqlite3"
    before = _stored_rows(store_db)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "index", str(project), "-q"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # kill it hard once the store has committed a first group of new chunks
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and _stored_rows(store_db) <= before:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the update finished before it could be killed"
    # the previous good state is intact: same manifest, still searchable, flagged as stale
    assert (project / ".assistant/index/manifest.json").read_bytes() == manifest_before
    again = open_index(project, settings)
    status = again.status()
    assert status.state == "stale" and status.interrupted
    hits = again.search("area of a rectangle", k=3)
    assert hits and all(not h.path.startswith("email/") for h in hits)
    stored_during_kill = again.store.id_hashes()
    assert old_ids < stored_during_kill  # it was killed mid-way: some new chunks were stored
    # the next run resumes: what the killed run stored is not embedded again
    summary = again.update()
    expected = fresh_id_hashes(project, settings, tmp_path)
    assert again.store.id_hashes() == expected
    assert summary.embedded == len({i for i, _ in expected} - {i for i, _ in stored_during_kill})
    assert again.status().state == "fresh"
    json.loads((project / ".assistant/index/manifest.json").read_text())  # a whole, valid manifest


def test_progress_reports_files_and_chunks_and_the_store_is_cosine(project, settings):
    events = []
    idx = open_index(project, settings)
    summary = idx.update(progress=events.append)
    scans = [e for e in events if e.stage == "scan"]
    embeds = [e for e in events if e.stage == "embed"]
    assert scans[-1].done == scans[-1].total == summary.files
    assert embeds[-1].done == embeds[-1].total == summary.embedded
    assert [e.done for e in embeds] == sorted(e.done for e in embeds)
    assert idx.store.collection().metadata["hnsw:space"] == "cosine"
