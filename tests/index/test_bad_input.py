"""Bad input: skipped with counts in the summary, or one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.cli import main
from index import IndexingError, IndexSettings, open_index
from tests.ci import unavailable


def _configure(project: Path, settings: IndexSettings, extra: str = "") -> None:
    (project / ".assistant").mkdir(parents=True, exist_ok=True)
    (project / ".assistant/settings.toml").write_text(f'[index]\ncache_dir = "{settings.cache_dir}"\n{extra}')


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assistant: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_odd_files_are_skipped_and_counted(project, settings, capsys):
    _configure(project, settings)
    (project / "blob.py").write_bytes(b"\x00\x01binary\x00" * 100)
    (project / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    (project / "huge.py").write_text("x = 1\n" * 300_000)  # 1.8 MB
    os.symlink("loop_b.py", project / "loop_a.py")
    os.symlink("loop_a.py", project / "loop_b.py")
    os.symlink(project / "pkg", project / "pkg/self_link")  # a directory loop: never followed
    os.symlink("/etc/hostname", project / "outside.py")
    (project / ".gitignore").write_text("secret_*.py\ngenerated/\n")
    (project / "secret_keys.py").write_text("KEY = 'do not index me'\n")
    (project / "generated").mkdir()
    (project / "generated/out.py").write_text("def generated_code():\n    pass\n")
    (project / "node_modules/lib").mkdir(parents=True)
    (project / "node_modules/lib/index.js").write_text("function vendored() {}\n")
    (project / "env_dir").mkdir()
    (project / "env_dir/pyvenv.cfg").write_text("home = /usr\n")
    (project / "env_dir/site.py").write_text("def in_a_virtualenv():\n    pass\n")
    code, out, err = _run(capsys, "index", str(project), "-q")
    assert code == 0, err
    summary = out.splitlines()[0]
    assert summary.startswith("indexed 7 files")
    for fragment in ("1 binary", "1 not UTF-8", "1 too large", "2 unreadable", "2 symlink"):
        assert fragment in summary, summary
    paths = {h.path for h in open_index(project, settings).search("code", k=50)}
    assert not paths & {"secret_keys.py", "generated/out.py", "node_modules/lib/index.js", "env_dir/site.py",
                        "outside.py", "blob.py", "latin1.py", "huge.py"}


def test_unreadable_file_is_counted(project, settings, capsys):
    _configure(project, settings)
    locked = project / "locked.py"
    locked.write_text("x = 1\n")
    locked.chmod(0)
    if os.geteuid() != 0:
        code, out, _ = _run(capsys, "index", str(project), "-q")
    else:  # root reads any file: index without the capabilities that override file modes
        if shutil.which("setpriv") is None:
            unavailable("setpriv (util-linux) is needed to index without root's file-mode override")
        done = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                               sys.executable, "-m", "assistant", "index", str(project), "-q"],
                              capture_output=True, text=True, timeout=300, check=False)
        code, out = done.returncode, done.stdout + done.stderr
    assert code == 0 and "1 unreadable" in out, out


def test_paths_that_are_not_project_directories(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("hi")
    code, _, err = _run(capsys, "index", str(tmp_path / "file.txt"))
    assert code == 2 and "is not a directory" in _one_error_line(err)
    code, _, err = _run(capsys, "index", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in _one_error_line(err)


def test_empty_directory_says_so(tmp_path, settings, capsys):
    _configure(tmp_path, settings)
    code, out, _ = _run(capsys, "index", str(tmp_path), "-q")
    assert code == 0
    assert "indexed 0 files" in out and "nothing to index" in out


def test_bad_flags_and_settings_are_one_line(project, settings, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["index", str(project), "--chroma-port", "not-a-port"])
    assert exc.value.code == 2
    _one_error_line(capsys.readouterr().err)
    _configure(project, settings, 'backend = "tpu"\n')
    code, _, err = _run(capsys, "index", str(project))
    assert code == 1 and "unknown embedding backend 'tpu'" in _one_error_line(err)
    _configure(project, settings, "colour = 3\n")
    code, _, err = _run(capsys, "index", str(project))
    assert code == 1 and "unknown key(s) in [index]: colour" in _one_error_line(err)


def test_missing_embedding_model_is_one_line(project, settings, capsys):
    _configure(project, settings, f'model_path = "{project / "no-model"}"\n')
    code, _, err = _run(capsys, "index", str(project))
    line = _one_error_line(err)
    assert code == 1 and "no embedding model at" in line and "model_path" in line


def test_store_written_by_another_chroma_version(project, settings, capsys):
    _configure(project, settings)
    assert _run(capsys, "index", str(project), "-q")[0] == 0
    manifest_path = project / ".assistant/index/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["chroma"] = "0.4.24"
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = _run(capsys, "index", str(project), "-q")
    line = _one_error_line(err)
    assert code == 1 and "written by chromadb 0.4.24" in line and "--rebuild" in line
    code, _, err = _run(capsys, "index", str(project), "-q", "--rebuild")
    assert code == 0, err
    assert open_index(project, settings).search("area of a rectangle", k=1)[0].symbol == "rectangle_area"


def test_store_chroma_cannot_read(project, settings, capsys):
    _configure(project, settings)
    assert _run(capsys, "index", str(project), "-q")[0] == 0
    from index.store import forget_clients

    forget_clients()
    (project / ".assistant/index/chroma/chroma.sqlite3").write_bytes(b"this is not sqlite" * 100)
    code, _, err = _run(capsys, "index", str(project), "-q", "--rebuild")
    assert code == 0, err
    forget_clients()
    (project / ".assistant/index/chroma/chroma.sqlite3").write_bytes(b"this is not sqlite" * 100)
    manifest = project / ".assistant/index/manifest.json"
    manifest.write_text(manifest.read_text().replace('"updated"', '"touched": 1, "updated"'))
    (project / "pkg/shapes.py").write_text("def changed():\n    pass\n")
    code, _, err = _run(capsys, "index", str(project), "-q")
    line = _one_error_line(err)
    assert code == 1 and "--rebuild" in line


def test_corrupt_manifest_is_one_line_for_search_and_recovered_by_index(project, settings, capsys):
    _configure(project, settings)
    assert _run(capsys, "index", str(project), "-q")[0] == 0
    (project / ".assistant/index/manifest.json").write_text("{ half a manifest")
    with pytest.raises(IndexingError, match="unreadable"):
        open_index(project, settings).search("area")
    code, out, err = _run(capsys, "index", str(project), "-q")
    assert code == 0, err
    assert "0 embedded" in out  # the store still had every chunk: nothing embedded again
    assert open_index(project, settings).search("area of a rectangle", k=1)[0].symbol == "rectangle_area"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_chroma_server_is_one_line(project, settings, capsys):
    _configure(project, settings)
    code, _, err = _run(capsys, "index", str(project), "--chroma-host", "127.0.0.1",
                        "--chroma-port", str(_free_port()))
    line = _one_error_line(err)
    assert code == 1 and "cannot reach the Chroma server" in line


def test_index_and_search_through_a_chroma_server(project, settings, tmp_path, capsys):
    chroma = Path(sys.executable).parent / "chroma"
    port = _free_port()
    server = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        _configure(project, settings, f'chroma_host = "127.0.0.1"\nchroma_port = {port}\n')
        code, out, err = _run(capsys, "index", str(project), "-q")
        assert code == 0, err
        assert not (project / ".assistant/index/chroma").exists()  # the vectors live in the server
        assert (tmp_path / "server-data").is_dir()
        code, out, err = _run(capsys, "search", "area of a rectangle", "--project", str(project), "-k", "1")
        assert code == 0 and out.startswith("pkg/shapes.py:16-18  rectangle_area"), out + err
        (project / "pkg/shapes.py").unlink()
        code, out, _ = _run(capsys, "index", str(project), "-q")
        assert code == 0 and "1 removed" in out
    finally:
        server.terminate()
        server.wait(timeout=30)
