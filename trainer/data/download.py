"""Downloading public corpora for real users (needs the internet; tests never call it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from trainer import TrainerError

TINYSTORIES_REPO = "roneneldan/TinyStories"
TINYSTORIES_FILES = ("TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt")


def download_tinystories(output_dir: str | Path = "data/raw") -> list[Path]:
    """Fetch TinyStories (GPT-4 split, ~2 GB) from the Hugging Face hub into ``output_dir``."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:
        raise TrainerError("huggingface_hub is not installed", "pip install huggingface_hub") from exc
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for name in TINYSTORIES_FILES:
        target = output_dir / name
        if target.exists():
            saved.append(target)
            continue
        try:
            cached = hf_hub_download(TINYSTORIES_REPO, name, repo_type="dataset")
        except LocalEntryNotFoundError as exc:
            raise TrainerError(
                "cannot download TinyStories: the Hugging Face hub is unreachable (offline, or HF_HUB_OFFLINE=1)",
                "connect to the internet, or prepare any local text with 'assistant data prepare --stage language --input FILES'",
            ) from exc
        except OSError as exc:
            raise TrainerError(f"cannot download TinyStories: {exc}", "check the network and try again") from exc
        tmp = target.with_suffix(".part")
        shutil.copyfile(cached, tmp)
        tmp.replace(target)
        saved.append(target)
    return saved
