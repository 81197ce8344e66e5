"""The settings file: one TOML document per scope, merged user < project.

Scopes:
  user     $XDG_CONFIG_HOME/assistant/settings.toml (~/.config/assistant/settings.toml)
  project  <project>/.assistant/settings.toml  (rules like "Allow always" land here)

Sections are plain tables (``[sandbox]``, ``[index]``, ``[model]``, ``[approvals]``...).
Each package owns a dataclass for its section; ``section()`` builds it from the merged
table and refuses unknown keys with one clear line. Writes are atomic.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from common.atomic import atomic_write_text
from common.errors import AssistantError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


class SettingsError(AssistantError):
    """A settings file that cannot be read or does not fit its schema."""


def user_settings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "assistant" / "settings.toml"


def project_settings_path(project: str | os.PathLike) -> Path:
    return Path(project) / ".assistant" / "settings.toml"


def read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}", "fix or delete the file") from exc
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from exc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(project: str | os.PathLike | None = None) -> dict[str, Any]:
    """The merged settings: user file, then the project's file on top."""
    merged = read_toml(user_settings_path())
    if project is not None:
        merged = _merge(merged, read_toml(project_settings_path(project)))
    return merged


def section(settings: dict[str, Any], name: str, schema: type[T]) -> T:
    """Build the dataclass ``schema`` from table ``name``; unknown keys are an error."""
    table = settings.get(name, {}) or {}
    if not isinstance(table, dict):
        raise SettingsError(f"settings: [{name}] must be a table")
    known = {f.name for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(
            f"settings: unknown key(s) in [{name}]: {', '.join(unknown)}",
            f"known keys: {', '.join(sorted(known))}",
        )
    try:
        return schema(**table)
    except TypeError as exc:
        raise SettingsError(f"settings: [{name}] {exc}") from exc


def set_project_setting(project: str | os.PathLike, dotted_key: str, value: Any) -> Path:
    """Set ``a.b.c = value`` in the project's settings file (atomically) and return its path."""
    path = project_settings_path(project)
    document = read_toml(path)
    node = document
    *parents, leaf = dotted_key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SettingsError(f"settings: '{part}' in {path} is not a table")
        node = child
    node[leaf] = value
    atomic_write_text(path, tomli_w.dumps(document))
    return path
