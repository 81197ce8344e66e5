"""The causal language model around any architecture's blocks: embeddings, blocks, norm, head."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from trainer.models import dense, hybrid, mamba, moe
from trainer.models.config import ModelConfig
from trainer.models.layers import RMSNorm, init_weights, make_norm

_BLOCK_BUILDERS = {
    "dense": dense.build_blocks,
    "mamba": mamba.build_blocks,
    "moe": moe.build_blocks,
    "hybrid": hybrid.build_blocks,
}


class CausalLM(nn.Module):
    """tokens (B, T) -> logits (B, T, vocab), plus router statistics for MoE.

    ``forward`` returns ``(logits, aux)``; ``aux`` is empty except for MoE, where it holds the
    summed weighted auxiliary loss (``aux_loss``) and per-layer statistics.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.learned_positions = config.architecture in ("dense", "moe") and config.position == "learned"
        self.pos_embed = nn.Embedding(config.max_seq_len, config.d_model) if self.learned_positions else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_BLOCK_BUILDERS[config.architecture](config))
        self.norm = RMSNorm(config.d_model, config.norm_eps) if config.architecture == "mamba" else make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.gradient_checkpointing = False
        init_weights(self, config.n_layers)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def forward(self, idx: torch.Tensor, cache: list | None = None, start_pos: int = 0, last_only: bool = False,
                head: bool = True):
        """``cache`` (from ``new_cache``) makes this an incremental step at ``start_pos``;
        ``last_only`` computes the logits of the last position only (generation); ``head=False``
        returns the final normalised hidden states (B, T, d) instead of logits (reward and value heads)."""
        B, T = idx.shape
        if start_pos + T > self.config.max_seq_len and self.learned_positions:
            raise ValueError(f"sequence of {start_pos + T} tokens exceeds max_seq_len {self.config.max_seq_len}")
        x = self.embed(idx)  # (B, T, d)
        if self.pos_embed is not None:
            x = x + self.pos_embed(torch.arange(start_pos, start_pos + T, device=idx.device))
        x = self.drop(x)
        aux_list = []
        for i, block in enumerate(self.blocks):
            layer_cache = cache[i] if cache is not None else None
            if self.gradient_checkpointing and self.training and layer_cache is None:
                x, aux = checkpoint(block, x, start_pos, None, use_reentrant=False)
            else:
                x, aux = block(x, start_pos, layer_cache)
            if aux is not None:
                aux_list.append(aux)
        if last_only:
            x = x[:, -1:]
        hidden = self.norm(x)
        return (self.lm_head(hidden) if head else hidden), _merge_aux(aux_list)

    def new_cache(self, batch: int = 1, device=None, kv_dtype: torch.dtype | None = None) -> list:
        """A fresh per-layer generation cache: KV caches for attention, recurrent state for Mamba.

        ``kv_dtype`` stores keys/values (and runs attention over them) in another dtype than the
        activations, e.g. float32 for bf16 weights on CPU."""
        device = device or self.norm.weight.device
        dtype = self.norm.weight.dtype  # the activations' dtype (the embedding may be quantized)
        caches = []
        for block in self.blocks:
            if isinstance(block, mamba.MambaBlock):
                caches.append(block.new_cache(batch, device, dtype))
            else:
                caches.append(block.new_cache(kv_dtype))
        return caches


def _merge_aux(aux_list: list[dict]) -> dict:
    if not aux_list:
        return {}
    return {
        "aux_loss": sum(a["aux_loss"] for a in aux_list),
        "load_balance": torch.stack([a["load_balance"] for a in aux_list]).mean(),
        "z_loss": torch.stack([a["z_loss"] for a in aux_list]).mean(),
        "expert_share": torch.stack([a["expert_share"] for a in aux_list]),  # (layers, E)
    }


def build_model(config: ModelConfig) -> CausalLM:
    return CausalLM(config)


def count_parameters(model: CausalLM) -> tuple[int, int]:
    """(total, active per token). Active counts only top_k of num_experts expert MLPs."""
    seen: set[int] = set()
    total = 0
    expert_params = 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if ".experts." in name:
            expert_params += p.numel()
    cfg = model.config
    active = total
    if cfg.architecture == "moe" and expert_params:
        active = total - expert_params + expert_params * cfg.top_k // cfg.num_experts
    return total, active
