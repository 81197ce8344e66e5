"""A tokenizer and small random checkpoints of every architecture, made by the project's own code."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from tests.threads import _one_torch_thread  # noqa: F401 (autouse fixture)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
TEXT = "naïve café, déjà vu — 日本語のテキスト 🎉🚀 ∑ λx. x² ≠ ∞"


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """A 600-token byte-level BPE (the chat tokens reserved) trained on standard-library sources."""
    from trainer.data.tokenizer import save_tokenizer, train_tokenizer

    documents = [p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))[:25]] + [TEXT]
    tokenizer = train_tokenizer(iter(documents), vocab_size=600)
    save_tokenizer(tokenizer, tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")
    return tokenizer


def write_checkpoint(path: Path, tokenizer, architecture: str = "dense", **overrides) -> Path:
    import torch

    from trainer.checkpoint import save_checkpoint
    from trainer.models import build_model, preset_config

    values = dict(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=4, n_heads=4, d_ff=128, max_seq_len=256,
                  window_size=16, attention_every=2, num_experts=4)
    values.update(overrides)
    config = preset_config("nano", architecture, **values)
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():  # livelier than the init, so greedy output varies
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name and architecture != "mamba":
                p.mul_(3.0)
    return save_checkpoint(path, model_state=model.state_dict(), model_config=config, tokenizer_json=tokenizer.to_str(),
                           tokenizer_hash=tokenizer.hash, kind="weights", stage="language", step=0)


@pytest.fixture(scope="session")
def checkpoints(tokenizer, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {arch: write_checkpoint(root / f"{arch}.pth", tokenizer, arch) for arch in ("dense", "mamba", "moe", "hybrid")}
    paths["small-context"] = write_checkpoint(root / "small.pth", tokenizer, "dense", max_seq_len=48)
    return paths
