"""Layers shared by the architectures: norms, rotary positions, MLPs, attention.

Each lives here once; the architecture files import them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.config import ModelConfig


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight (no mean subtraction, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)


def rope_frequencies(head_dim: int, theta: float, scaling: dict | None = None, device=None) -> torch.Tensor:
    """Inverse frequencies (head_dim // 2,), optionally rescaled as Llama 3 ("llama3") or by
    position interpolation ("linear"), so imported long-context models keep their positions."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = torch.where(medium, smoothed, scaled)
    elif kind != "default":
        raise ValueError(f"unsupported RoPE scaling '{kind}'")
    return inv_freq


def rope_tables(head_dim: int, max_len: int, theta: float, device=None,
                scaling: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables (max_len, head_dim) for rotary position embeddings.

    Both halves of ``cos`` repeat the same angles; ``sin`` is (-sin, +sin), so that
    ``apply_rope`` needs one roll instead of slicing (whose backward zero-fills).
    """
    inv_freq = rope_frequencies(head_dim, theta, scaling, device)
    angles = torch.outer(torch.arange(max_len, device=device, dtype=torch.float32), inv_freq)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + head_dim/2) of each head: the 'rotate_half' convention of Llama/HF.

    x: (B, n_heads, T, head_dim); cos/sin: (T, head_dim) from ``rope_tables``.
    (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), written as x*cos + roll(x, half)*signed_sin.
    """
    half = x.size(-1) // 2
    return x * cos.to(x.dtype) + x.roll(half, dims=-1) * sin.to(x.dtype)


class GeluMLP(nn.Module):
    def __init__(self, config: ModelConfig, d_ff: int | None = None) -> None:
        super().__init__()
        hidden = d_ff or config.d_ff
        self.fc = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class SwiGLU(nn.Module):
    """proj(silu(gate(x)) * up(x)), the Llama MLP."""

    def __init__(self, config: ModelConfig, d_ff: int | None = None) -> None:
        super().__init__()
        hidden = d_ff or config.d_ff
        self.gate = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.up = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.silu(self.gate(x)) * self.up(x))


def make_mlp(config: ModelConfig, d_ff: int | None = None) -> nn.Module:
    return SwiGLU(config, d_ff) if config.mlp == "swiglu" else GeluMLP(config, d_ff)


def sliding_window_mask(t_query: int, t_key: int, window: int, device) -> torch.Tensor:
    """Boolean (t_query, t_key) mask: query i (the last t_query positions) sees keys in (i-window, i]."""
    q = torch.arange(t_key - t_query, t_key, device=device).unsqueeze(1)
    k = torch.arange(t_key, device=device).unsqueeze(0)
    return (k <= q) & (k > q - window)


class Attention(nn.Module):
    """Causal self-attention with grouped-query heads, optional RoPE and an optional sliding window.

    Attention itself is ``F.scaled_dot_product_attention``, so CUDA picks its flash or
    memory-efficient kernels when there is no explicit mask.
    """

    def __init__(self, config: ModelConfig, use_rope: bool, window: int | None = None) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.kv_heads
        self.head_dim = config.head_dim
        self.window = window
        self.use_rope = use_rope
        self.rope_theta = config.rope_theta
        self.rope_scaling = config.rope_scaling
        kv_dim = self.n_kv_heads * self.head_dim
        qkv_bias = config.bias or config.qkv_bias
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=qkv_bias)
        self.k_proj = nn.Linear(config.d_model, kv_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(config.d_model, kv_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.dropout = config.dropout
        self._rope_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _rope(self, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._rope_cache
        if cache is None or cache[0].size(0) < length or cache[0].device != device:
            size = max(length, 2 * (cache[0].size(0) if cache is not None else 0), 256)
            cache = rope_tables(self.head_dim, size, self.rope_theta, device, self.rope_scaling)
            self._rope_cache = cache
        return cache

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache=None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.use_rope:
            cos, sin = self._rope(start_pos + T, x.device)
            cos, sin = cos[start_pos : start_pos + T], sin[start_pos : start_pos + T]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)  # keys/values of all positions the new queries may see
            q = q.to(k.dtype)  # the cache may keep a wider dtype than the weights (see KVCache)
        t_key = k.size(2)
        dropout = self.dropout if self.training else 0.0
        gqa = self.n_kv_heads != self.n_heads  # SDPA shares each key/value head among its query heads
        if T == 1:  # one new query: the cache holds exactly the keys it sees
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, enable_gqa=gqa)
        elif T == t_key and (self.window is None or T <= self.window):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, enable_gqa=gqa)
        else:  # keys are the last t_key positions, queries the last T: relative offsets suffice
            mask = sliding_window_mask(T, t_key, self.window or t_key, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim).to(x.dtype)
        return self.o_proj(y)


class KVCache:
    """Keys and values seen so far for one attention layer; bounded to ``window`` when given.

    Keys live in a preallocated buffer (B, nkv, capacity, hd) that grows by doubling, so a decode
    step writes one row instead of copying the whole cache. With a window the buffer holds at most
    2 * window rows and is compacted to the last window - 1 when full: memory stays bounded.
    ``dtype`` (default: the keys' own) lets bf16 weights attend in float32 where that is faster.
    """

    def __init__(self, window: int | None = None, dtype: torch.dtype | None = None) -> None:
        self.window = window
        self.dtype = dtype
        self.k: torch.Tensor | None = None  # the buffer; rows [0, length) are valid
        self.v: torch.Tensor | None = None
        self.length = 0

    def _reserve(self, k: torch.Tensor, extra: int) -> None:
        need = self.length + extra
        if self.k is not None and need <= self.k.size(2):
            return
        if self.window is not None and self.k is not None and self.length >= self.window:
            keep = self.window - 1  # what the next query still needs besides itself
            self.k[:, :, :keep] = self.k[:, :, self.length - keep : self.length].clone()
            self.v[:, :, :keep] = self.v[:, :, self.length - keep : self.length].clone()
            self.length = keep
            if self.length + extra <= self.k.size(2):
                return
        capacity = max(need, 2 * (self.k.size(2) if self.k is not None else 0), 64)
        if self.window is not None:
            capacity = max(need, 2 * self.window)
        B, H, _, D = k.shape
        k_buf = k.new_empty(B, H, capacity, D)
        v_buf = k.new_empty(B, H, capacity, D)
        if self.k is not None and self.length:
            k_buf[:, :, : self.length] = self.k[:, :, : self.length]
            v_buf[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k_buf, v_buf

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append (B, nkv, T, hd) keys/values; return all keys/values the new queries may see."""
        if self.dtype is not None:
            k, v = k.to(self.dtype), v.to(self.dtype)
        T = k.size(2)
        if self.window is not None and T > 1:
            # a multi-token chunk: attend over what is kept plus the chunk, then keep the window
            if self.length:
                k = torch.cat((self.k[:, :, : self.length], k), dim=2)
                v = torch.cat((self.v[:, :, : self.length], v), dim=2)
            keep = min(self.window, k.size(2))
            B, H, _, D = k.shape
            self.k, self.v = k.new_empty(B, H, 2 * self.window, D), k.new_empty(B, H, 2 * self.window, D)
            self.k[:, :, :keep], self.v[:, :, :keep] = k[:, :, -keep:], v[:, :, -keep:]
            self.length = keep
            return k, v
        self._reserve(k, T)
        self.k[:, :, self.length : self.length + T] = k
        self.v[:, :, self.length : self.length + T] = v
        self.length += T
        start = 0 if self.window is None else max(0, self.length - self.window)
        return self.k[:, :, start : self.length], self.v[:, :, start : self.length]

    @property
    def memory_bytes(self) -> int:
        return 0 if self.k is None else 2 * self.k.numel() * self.k.element_size()


def init_weights(module: nn.Module, n_layers: int) -> None:
    """GPT-2 style init: N(0, 0.02), output projections scaled by 1/sqrt(2 * n_layers)."""
    std = 0.02
    for name, param in module.named_parameters():
        if getattr(param, "_no_reinit", False):
            continue
        if name.endswith("bias"):
            nn.init.zeros_(param)
        elif param.dim() >= 2:
            scale = 1.0 / math.sqrt(2 * n_layers) if name.endswith(("o_proj.weight", "proj.weight", "out_proj.weight")) else 1.0
            nn.init.normal_(param, mean=0.0, std=std * scale)
