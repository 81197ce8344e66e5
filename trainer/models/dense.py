"""Dense decoder-only transformer block: pre-norm attention, then pre-norm MLP."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.config import ModelConfig
from trainer.models.layers import Attention, make_mlp, make_norm


class TransformerBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)). ``mlp`` may be a mixture of experts."""

    def __init__(self, config: ModelConfig, mlp: nn.Module | None = None, window: int | None = None,
                 use_rope: bool | None = None) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        rope = config.position == "rope" if use_rope is None else use_rope
        self.attn = Attention(config, use_rope=rope, window=window)
        self.mlp_norm = make_norm(config)
        self.mlp = mlp if mlp is not None else make_mlp(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache=None):
        x = x + self.dropout(self.attn(self.attn_norm(x), start_pos, cache))
        out = self.mlp(self.mlp_norm(x))
        aux = None
        if isinstance(out, tuple):  # a mixture of experts also returns its router statistics
            out, aux = out
        return x + self.dropout(out), aux

    def new_cache(self, kv_dtype=None):
        from trainer.models.layers import KVCache

        return KVCache(self.attn.window, kv_dtype)


def build_blocks(config: ModelConfig) -> list[nn.Module]:
    return [TransformerBlock(config, window=config.sliding_window) for _ in range(config.n_layers)]
