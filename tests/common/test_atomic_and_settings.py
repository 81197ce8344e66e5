from __future__ import annotations

import pytest

from assistant.settings import SettingsError, load_settings, section, set_project_setting
from common.atomic import atomic_write_text, atomic_writer


def test_atomic_writer_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_project_settings_override_user_and_reject_unknown_keys(tmp_path):
    import dataclasses

    @dataclasses.dataclass
    class Box:
        image: str = "python:3.12-slim"
        memory_mb: int = 512

    set_project_setting(tmp_path, "box.memory_mb", 256)
    settings = load_settings(tmp_path)
    assert section(settings, "box", Box) == Box(memory_mb=256)
    set_project_setting(tmp_path, "box.colour", "red")
    with pytest.raises(SettingsError, match="unknown key"):
        section(load_settings(tmp_path), "box", Box)
