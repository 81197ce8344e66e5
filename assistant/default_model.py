"""Which checkpoint the assistant opens: ``--model PATH``, else ``[model] path`` in the settings file,
else the model ``assistant retrain`` last promoted (in ``user_models_dir()``), else the model shipped
in ``models/`` (``DEFAULT_MODEL``).

One definition, used by the TUI and the headless commands, so "the default model" means one file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The repository's models/ folder (where the default model is shipped; issue 7 puts it there).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# The shipped default model (models/README.md is its card; models/train_default.sh made it).
DEFAULT_MODEL = MODELS_DIR / "default" / "model_int8.pth"
PROJECT_ROOT = MODELS_DIR.parent


def user_models_dir() -> Path:
    """Where stage 10 keeps this user's retrained models (beside the feedback store they learn from):
    ``$XDG_DATA_HOME/assistant/models``, by default ``~/.local/share/assistant/models``."""
    from feedback import default_feedback_path

    return default_feedback_path().parent / "models"


@dataclass
class ModelChoice:
    """The path to open and where that choice came from ("--model", "settings" or "default")."""

    path: Path
    source: str

    @property
    def exists(self) -> bool:
        return self.path.is_file()


def choose_model(explicit: str | os.PathLike | None, settings: dict[str, Any]) -> ModelChoice:
    """The checkpoint to open. Relative paths in the settings file are taken from the current folder."""
    if explicit:
        return ModelChoice(Path(explicit).expanduser(), "--model")
    table = settings.get("model") or {}
    configured = table.get("path") if isinstance(table, dict) else None
    if configured:
        return ModelChoice(Path(str(configured)).expanduser(), "settings")
    promoted = promoted_default()
    if promoted is not None:
        return ModelChoice(promoted, "promoted")
    return ModelChoice(DEFAULT_MODEL, "default")


def promoted_default() -> Path | None:
    """The model that ``assistant retrain`` (stage 10) last promoted, if any: the nightly retraining
    improves the model the assistant opens by default. Looked up in ``user_models_dir()``, then in the
    repository's ``models/`` (``assistant retrain --models-dir models``).

    A registry whose current model is still the base it started from (nothing promoted yet, or rolled
    back to it) is passed over, so a newer shipped model is not hidden by an old copy of itself."""
    from trainer.continual.registry import Registry

    for models_dir in (user_models_dir(), MODELS_DIR):
        try:
            registry = Registry(models_dir)
            current = registry.current() if registry.initialised else None
            path = registry.file(current, "shipped") if current and current.get("parent") else None
        except Exception:  # an unreadable registry must not keep the app from opening the shipped model
            continue
        if path is not None and path.is_file():
            return path
    return None


def how_to_get_a_model(choice: ModelChoice) -> str:
    """Markdown telling the user how to get a model, when ``choice`` does not exist."""
    where = {"--model": "given with `--model`", "settings": "set as `[model] path` in the settings file",
             "promoted": "promoted by `assistant retrain`", "default": "the shipped default"}[choice.source]
    return f"""\
**No model found** at `{choice.path}` ({where}).

The assistant needs a checkpoint to chat with. Any of these gives you one:

- **The shipped default**: `{DEFAULT_MODEL.relative_to(MODELS_DIR.parent)}` comes with the repository;
  `git pull` (or `git lfs pull`) restores it if it is missing.
- **Train your own**: `assistant train --stage language ...`, then `--stage code` and
  `--stage tool_calling` (see the README's training section), then `assistant quantize`.
- **Import one**: `assistant model import ~/models/Qwen2.5-Coder-0.5B --output models/qwen-coder.pth`.

Then open it with `assistant --model PATH`, or set it once for every session:

```toml
# ~/.config/assistant/settings.toml  (or .assistant/settings.toml in a project)
[model]
path = "/path/to/model.pth"
```

Everything else (`/index`, `/search`, `/sandbox`, `/help`) works without a model.
"""


def default_model_path(settings: dict[str, Any] | None = None) -> Path:
    """``[model] path`` from the settings when set, else the shipped int8 model."""
    return choose_model(None, settings or {}).path
