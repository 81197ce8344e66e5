"""Where the shipped default model lives: ``make run`` and every command without ``--model`` use it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PROJECT_ROOT / "models" / "default" / "model_int8.pth"


def default_model_path(settings: dict | None = None) -> Path:
    """``[model] path`` from the settings when set, else the shipped int8 model."""
    configured = ((settings or {}).get("model") or {}).get("path")
    return Path(configured).expanduser() if configured else DEFAULT_MODEL
