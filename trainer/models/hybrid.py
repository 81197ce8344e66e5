"""Hybrid: Mamba blocks interleaved with sliding-window attention blocks.

Layer i is attention when ``i % attention_every == attention_every - 1`` (default every 4th layer,
i.e. 1 attention : 3 Mamba, as in Jamba-style designs), otherwise a Mamba block. Attention layers
use RoPE and see the last ``window_size`` positions (default 256; 128 at nano), so their cost and
their generation cache are bounded by the window while the Mamba layers carry long-range state.
"""

from __future__ import annotations

from torch import nn

from trainer.models.config import ModelConfig
from trainer.models.dense import TransformerBlock
from trainer.models.mamba import MambaBlock


def build_blocks(config: ModelConfig) -> list[nn.Module]:
    return [
        TransformerBlock(config, window=config.window_size, use_rope=True)
        if config.is_attention_layer(i)
        else MambaBlock(config)
        for i in range(config.n_layers)
    ]
