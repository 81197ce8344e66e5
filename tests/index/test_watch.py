"""The watcher: real file-system events (watchdog), debounced updates that converge to a fresh index."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.index.index_helpers import fresh_id_hashes
from tests.index.test_incremental import MUTATIONS

from index import open_index

REPO = Path(__file__).resolve().parents[2]


def _wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_watcher_converges_after_each_kind_of_change(project, settings, tmp_path):
    idx = open_index(project, settings)
    idx.update()
    updates = []
    errors = []
    watcher = idx.watcher(on_update=updates.append, on_error=errors.append).start()
    try:
        time.sleep(0.3)  # the observer is live
        for mutate in MUTATIONS:
            count = watcher.updates
            mutate(project)
            expected = fresh_id_hashes(project, settings, tmp_path)
            assert _wait_until(lambda count=count, expected=expected: watcher.updates > count and watcher.idle()
                               and idx.store.id_hashes() == expected), mutate.__name__
            assert idx.status().state == "fresh", mutate.__name__
        assert not errors
        # editor temp and swap files never trigger an update
        count = watcher.updates
        (project / "pkg/.shapes.py.swp").write_bytes(b"\x00swap")
        (project / "pkg/shapes.py~").write_text("backup")
        (project / ".assistant/junk").write_text("ours")
        time.sleep(1.0)
        assert watcher.updates == count
        # a burst of saves is debounced into few updates, and the last content wins
        target = project / "pkg/shapes.py"
        count = watcher.updates
        base = target.read_text()
        for i in range(10):
            target.write_text(base + f"\nfactor = {i}\n")
            time.sleep(0.02)
        expected = fresh_id_hashes(project, settings, tmp_path)
        assert _wait_until(lambda: watcher.idle() and idx.store.id_hashes() == expected)
        assert watcher.updates - count <= 3
    finally:
        watcher.stop()
    assert not errors


def _ctrl_c_as_in_a_terminal() -> None:
    """The child gets SIGINT as a shell gives it: default disposition, not blocked. In the full suite it
    otherwise inherited a state from the test process in which Ctrl-C never reached it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_cli_watch_picks_up_a_new_file_and_stops_on_ctrl_c(project, settings):
    (project / ".assistant").mkdir(exist_ok=True)
    (project / ".assistant/settings.toml").write_text(
        f'[index]\ncache_dir = "{settings.cache_dir}"\ndebounce_ms = 200\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "index", str(project), "--watch", "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=120).startswith("indexed 7 files")
        assert lines.get(timeout=30).startswith("watching ")
        (project / "pkg/extra.py").write_text("def brand_new_helper():\n    return 42\n")
        line = lines.get(timeout=30)
        assert "1 changed" in line, line
        hits = open_index(project, settings).search("brand_new_helper", k=1)
        assert hits[0].path == "pkg/extra.py"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)  # a hang guard, not a speed bound (one CI run took over 30 s)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
