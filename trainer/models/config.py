"""One config dataclass for all four architectures, and the size presets.

The shapes of tiny/medium/large/xlarge are the seed's (README "Model Configurations"); with the
seed's defaults (LayerNorm, learned positions, GELU MLP, untied embeddings, vocab 32000) the dense
model has 137M / 371M / 1.1B / 1.5B parameters. ``nano`` (under 3M) is for tests and demos.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ARCHITECTURES = ("dense", "mamba", "moe", "hybrid")

# name -> (d_model, n_layers, n_heads, d_ff, vocab_size, max_seq_len)
SIZE_PRESETS: dict[str, tuple[int, int, int, int, int, int]] = {
    "nano": (128, 4, 4, 512, 4096, 512),
    "tiny": (768, 12, 12, 3072, 32000, 4096),
    "medium": (1024, 24, 16, 4096, 32000, 4096),
    "large": (1600, 32, 25, 6400, 32000, 4096),
    "xlarge": (1792, 36, 28, 7168, 32000, 4096),
}


@dataclass
class ModelConfig:
    """The full shape of a model; stored in every checkpoint so loading needs no flags."""

    architecture: str = "dense"
    vocab_size: int = 32000
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int | None = None  # None: multi-head; fewer than n_heads: grouped-query
    d_ff: int = 3072
    max_seq_len: int = 4096
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    position: str = "learned"  # learned | rope (hybrid's attention layers always use rope)
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # None, or {"rope_type": "linear"|"llama3", ...} (imported models)
    mlp: str = "gelu"  # gelu | swiglu
    tie_embeddings: bool = False
    bias: bool = False  # bias on Linear layers
    qkv_bias: bool = False  # bias on q/k/v only (Qwen2)
    dropout: float = 0.0
    # mamba (also the hybrid's Mamba layers)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None: ceil(d_model / 16)
    # mixture of experts
    num_experts: int = 8
    top_k: int = 2
    aux_loss_weight: float = 0.01  # load-balancing loss weight
    z_loss_weight: float = 0.001  # router z-loss weight
    # hybrid
    attention_every: int = 4  # every Nth layer is sliding-window attention, the rest Mamba
    window_size: int = 256  # sliding-window span of the hybrid's attention layers
    sliding_window: int | None = None  # dense/moe: attend only to the last N positions (Mistral)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture '{self.architecture}'")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.kv_heads < 1 or self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.kv_heads}")
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"unknown norm '{self.norm}'")
        if self.position not in ("learned", "rope"):
            raise ValueError(f"unknown position encoding '{self.position}'")
        if self.mlp not in ("gelu", "swiglu"):
            raise ValueError(f"unknown mlp '{self.mlp}'")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or -(-self.d_model // 16)

    def is_attention_layer(self, layer: int) -> bool:
        """Which layers attend: all for dense/moe, none for mamba, every Nth for hybrid."""
        if self.architecture in ("dense", "moe"):
            return True
        if self.architecture == "mamba":
            return False
        return layer % self.attention_every == self.attention_every - 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Flags that change the architecture: a checkpoint's values win, contradicting flags are refused.
ARCHITECTURE_FIELDS = (
    "architecture", "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff",
    "norm", "position", "mlp", "tie_embeddings", "num_experts", "top_k", "d_state", "d_conv",
    "expand", "attention_every", "window_size", "sliding_window", "rope_scaling",
)


def preset_config(size: str, architecture: str = "dense", **overrides: Any) -> ModelConfig:
    """The config for ``--model-size`` and ``--architecture``, with flag overrides applied.

    SwiGLU keeps the parameter count of the GELU MLP: its hidden size is 2/3 of d_ff, rounded
    up to a multiple of 64. Mamba and hybrid models default to RMSNorm and RoPE (for the hybrid's
    attention layers); Mamba ties its input and output embeddings, as the reference models do.
    """
    if size not in SIZE_PRESETS:
        raise ValueError(f"unknown model size '{size}' (choose from {', '.join(SIZE_PRESETS)})")
    d_model, n_layers, n_heads, d_ff, vocab, max_seq = SIZE_PRESETS[size]
    values: dict[str, Any] = dict(
        architecture=architecture, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
        d_ff=d_ff, vocab_size=vocab, max_seq_len=max_seq,
    )
    if architecture in ("mamba", "hybrid"):
        values.update(norm="rmsnorm", position="rope")
    if architecture == "mamba":
        values.update(tie_embeddings=True)  # as the Mamba reference models
    if size == "nano":
        values.update(window_size=128)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("mlp") == "swiglu" and "d_ff" not in overrides:
        values["d_ff"] = -(-(2 * values["d_ff"] // 3) // 64) * 64
    return ModelConfig(**values)
