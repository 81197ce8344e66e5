"""Hugging Face import and export: a local HF model directory <-> the project's checkpoint.

Import reads ``config.json``, ``*.safetensors`` and ``tokenizer.json`` (no ``transformers`` needed):

- LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM -> dense (RMSNorm, RoPE with its theta
  and Llama-3/linear scaling, SwiGLU, grouped-query attention, tied or untied embeddings, q/k/v
  bias, Mistral's sliding window); GPT2LMHeadModel -> dense (LayerNorm, learned positions, GELU);
- MambaForCausalLM -> mamba;  MixtralForCausalLM -> moe.

Chat tokens: the project's chat format needs its reserved tokens (``<|system|>`` ... ``<|end|>``,
see ``trainer.data.tokenizer.SPECIAL_TOKENS``). Those the imported tokenizer already has (Qwen's
``<|endoftext|>``) are reused; the others are added as special tokens after its vocabulary. Their
ids fall into the model's spare embedding rows when it has them (Qwen pads its vocabulary);
otherwise the embedding (and an untied output layer) is resized once, the new rows set to the
mean of the existing ones, so the new tokens start neutral until fine-tuning teaches them. The
model's own end-of-text token stays a stop token for generation.

Export writes dense (as Llama, Qwen2, Mistral or GPT-2, whichever matches the config), mamba and
moe (as Mixtral) back as ``config.json`` + ``model.safetensors`` + the tokenizer, loadable with
``transformers``' ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from common.atomic import atomic_write_text
from trainer import TrainerError
from trainer.models.config import ModelConfig

IMPORTABLE = {
    "LlamaForCausalLM": "dense", "MistralForCausalLM": "dense", "Qwen2ForCausalLM": "dense",
    "GPT2LMHeadModel": "dense", "MambaForCausalLM": "mamba", "MixtralForCausalLM": "moe",
}
_ROPE_TYPES = ("default", "linear", "llama3")


# ---- reading a directory -------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainerError(f"cannot read {path}: {str(exc)[:100]}", "is this a complete Hugging Face model directory?") from exc


def read_hf_config(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise TrainerError(f"not a directory: {directory}", "pass a local Hugging Face model directory (config.json, *.safetensors)")
    if not (directory / "config.json").exists():
        raise TrainerError(f"no config.json in {directory}", "pass a Hugging Face model directory saved with save_pretrained")
    hf = _read_json(directory / "config.json")
    architecture = (hf.get("architectures") or [None])[0]
    if architecture not in IMPORTABLE:
        raise TrainerError(f"unsupported architecture {architecture or hf.get('model_type') or 'unknown'}",
                           f"supported: {', '.join(IMPORTABLE)}")
    return hf


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        hint = "convert it with transformers' save_pretrained(safe_serialization=True)" if list(directory.glob("*.bin")) else \
            "download the model's *.safetensors files"
        raise TrainerError(f"no *.safetensors weights in {directory}", hint)
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            tensors.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise TrainerError(f"{path} is corrupt or truncated ({str(exc)[:80]})", "download the file again") from exc
    return tensors


# ---- configs ------------------------------------------------------------------------------------


def _rope(hf: dict) -> tuple[float, dict | None]:
    params = dict(hf.get("rope_parameters") or {})
    legacy = dict(hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = {**legacy, **params}
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind not in _ROPE_TYPES:
        raise TrainerError(f"RoPE scaling '{kind}' is not supported", f"supported: {', '.join(_ROPE_TYPES)}")
    if kind == "default":
        return float(theta), None
    keys = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}[kind]
    return float(theta), {"rope_type": kind, **{k: scaling[k] for k in keys}}


def config_from_hf(hf: dict) -> ModelConfig:
    """Our ModelConfig for an HF config.json (refusing, in one line, what we cannot represent)."""
    architecture = hf["architectures"][0]
    family = IMPORTABLE[architecture]
    vocab = int(hf["vocab_size"])
    if architecture == "GPT2LMHeadModel":
        return _gpt2_config(hf)
    if family == "mamba":
        d_model = int(hf["hidden_size"])
        expand = int(hf.get("expand", 2))
        if int(hf.get("intermediate_size", expand * d_model)) != expand * d_model:
            raise TrainerError("Mamba intermediate_size is not expand * hidden_size", "this variant is not supported")
        rank = hf.get("time_step_rank", "auto")
        return ModelConfig(
            architecture="mamba", vocab_size=vocab, d_model=d_model, n_layers=int(hf["num_hidden_layers"]), n_heads=1,
            d_ff=expand * d_model, max_seq_len=int(hf.get("max_position_embeddings", 2048)), norm="rmsnorm",
            norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), position="rope", d_state=int(hf.get("state_size", 16)),
            d_conv=int(hf.get("conv_kernel", 4)), expand=expand, dt_rank=None if rank == "auto" else int(rank),
            bias=bool(hf.get("use_bias", False)), tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        )
    if hf.get("hidden_act", "silu") != "silu":
        raise TrainerError(f"activation '{hf.get('hidden_act')}' is not supported", "Llama-family models use silu")
    d_model, n_heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    head_dim = hf.get("head_dim")
    if head_dim not in (None, d_model // n_heads) or d_model % n_heads:
        raise TrainerError(f"head_dim {head_dim} differs from hidden_size / num_attention_heads", "this variant is not supported")
    theta, scaling = _rope(hf)
    window = None
    if architecture in ("MistralForCausalLM", "MixtralForCausalLM"):
        window = hf.get("sliding_window")
    elif architecture == "Qwen2ForCausalLM" and hf.get("use_sliding_window"):
        raise TrainerError("Qwen2 with use_sliding_window is not supported", "only full-attention Qwen2 models import")
    max_len = int(hf.get("max_position_embeddings", 4096))
    if window is not None and int(window) >= max_len:
        window = None  # a window as long as the context is no window
    attention_bias = bool(hf.get("attention_bias", False))
    mlp_bias = bool(hf.get("mlp_bias", False))
    values: dict[str, Any] = dict(
        architecture=family, vocab_size=vocab, d_model=d_model, n_layers=int(hf["num_hidden_layers"]), n_heads=n_heads,
        n_kv_heads=int(hf.get("num_key_value_heads") or n_heads), d_ff=int(hf["intermediate_size"]), max_seq_len=max_len,
        norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)), position="rope", rope_theta=theta,
        rope_scaling=scaling, mlp="swiglu", tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bias=attention_bias or mlp_bias, qkv_bias=architecture == "Qwen2ForCausalLM",
        sliding_window=int(window) if window is not None else None,
    )
    if family == "moe":
        values.update(num_experts=int(hf["num_local_experts"]), top_k=int(hf["num_experts_per_tok"]),
                      aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.01)))
    return ModelConfig(**values)


def _gpt2_config(hf: dict) -> ModelConfig:
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise TrainerError(f"GPT-2 activation '{hf.get('activation_function')}' is not supported", "only the tanh GELU is")
    if hf.get("scale_attn_by_inverse_layer_idx") or hf.get("reorder_and_upcast_attn") or not hf.get("scale_attn_weights", True):
        raise TrainerError("this GPT-2 variant scales attention differently", "only standard GPT-2 attention is supported")
    d_model = int(hf.get("n_embd", 768))
    return ModelConfig(
        architecture="dense", vocab_size=int(hf["vocab_size"]), d_model=d_model, n_layers=int(hf.get("n_layer", 12)),
        n_heads=int(hf.get("n_head", 12)), d_ff=int(hf.get("n_inner") or 4 * d_model), max_seq_len=int(hf.get("n_positions", 1024)),
        norm="layernorm", norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), position="learned", mlp="gelu",
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)), bias=True,
    )


def hf_config_for(config: ModelConfig) -> dict:
    """The HF config.json for one of our configs, or one line saying why it has no HF twin."""
    c = config
    if c.architecture == "hybrid":
        raise TrainerError("hybrid models have no Hugging Face counterpart", "export dense, mamba or moe models")
    if c.architecture == "mamba":
        return {
            "architectures": ["MambaForCausalLM"], "model_type": "mamba", "vocab_size": c.vocab_size, "hidden_size": c.d_model,
            "num_hidden_layers": c.n_layers, "state_size": c.d_state, "expand": c.expand, "intermediate_size": c.d_inner,
            "conv_kernel": c.d_conv, "time_step_rank": c.resolved_dt_rank, "use_bias": c.bias, "use_conv_bias": True,
            "layer_norm_epsilon": c.norm_eps, "hidden_act": "silu", "residual_in_fp32": True,
            "tie_word_embeddings": c.tie_embeddings, "max_position_embeddings": c.max_seq_len,
        }
    gpt2_style = (c.norm, c.position, c.mlp) == ("layernorm", "learned", "gelu")
    llama_style = (c.norm, c.position, c.mlp) == ("rmsnorm", "rope", "swiglu")
    if c.architecture == "dense" and gpt2_style:
        if c.kv_heads != c.n_heads or c.sliding_window:
            raise TrainerError("GPT-2 has no grouped-query or sliding-window attention", "this model cannot be exported")
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size, "n_embd": c.d_model,
            "n_layer": c.n_layers, "n_head": c.n_heads, "n_inner": c.d_ff, "n_positions": c.max_seq_len,
            "activation_function": "gelu_new", "layer_norm_epsilon": c.norm_eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "tie_word_embeddings": c.tie_embeddings, "scale_attn_weights": True,
        }
    if not llama_style:
        raise TrainerError(
            f"a {c.norm} + {c.position} + {c.mlp} model has no Hugging Face counterpart",
            "exportable: RMSNorm+RoPE+SwiGLU (Llama/Qwen2/Mistral/Mixtral) or LayerNorm+learned+GELU (GPT-2)")
    base = {
        "vocab_size": c.vocab_size, "hidden_size": c.d_model, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim,
        "intermediate_size": c.d_ff, "max_position_embeddings": c.max_seq_len, "rms_norm_eps": c.norm_eps,
        "hidden_act": "silu", "tie_word_embeddings": c.tie_embeddings,
        "rope_parameters": {"rope_theta": c.rope_theta, **(c.rope_scaling or {"rope_type": "default"})},
        "attention_dropout": 0.0,
    }
    if c.architecture == "moe":
        if c.bias or c.qkv_bias:
            raise TrainerError("Mixtral has no bias on its layers", "this model cannot be exported")
        return {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", **base, "num_local_experts": c.num_experts,
                "num_experts_per_tok": c.top_k, "sliding_window": c.sliding_window, "router_jitter_noise": 0.0,
                "router_aux_loss_coef": c.aux_loss_weight}
    if c.qkv_bias and not c.bias:
        if c.sliding_window:
            raise TrainerError("Qwen2 export with a sliding window is not supported", "this model cannot be exported")
        return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **base, "use_sliding_window": False,
                "sliding_window": None, "layer_types": ["full_attention"] * c.n_layers}
    if c.sliding_window:
        if c.bias:
            raise TrainerError("Mistral has no bias on its layers", "this model cannot be exported")
        return {"architectures": ["MistralForCausalLM"], "model_type": "mistral", **base, "sliding_window": c.sliding_window}
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **base, "attention_bias": c.bias, "mlp_bias": c.bias}


# ---- weight names -------------------------------------------------------------------------------

# (HF name, our name); {i} is the layer, {j} the expert
_LLAMA = [
    ("model.embed_tokens.weight", "embed.weight"), ("model.norm.weight", "norm.weight"), ("lm_head.weight", "lm_head.weight"),
    ("model.layers.{i}.input_layernorm.weight", "blocks.{i}.attn_norm.weight"),
    ("model.layers.{i}.post_attention_layernorm.weight", "blocks.{i}.mlp_norm.weight"),
] + [(f"model.layers.{{i}}.self_attn.{p}_proj.{t}", f"blocks.{{i}}.attn.{p}_proj.{t}") for p in "qkvo" for t in ("weight", "bias")]
_LLAMA_MLP = [(f"model.layers.{{i}}.mlp.{hf}.{t}", f"blocks.{{i}}.mlp.{ours}.{t}")
              for hf, ours in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "proj")) for t in ("weight", "bias")]
_MIXTRAL = [("model.layers.{i}.block_sparse_moe.gate.weight", "blocks.{i}.mlp.router.weight")] + [
    (f"model.layers.{{i}}.block_sparse_moe.experts.{{j}}.{hf}.weight", f"blocks.{{i}}.mlp.experts.{{j}}.{ours}.weight")
    for hf, ours in (("w1", "gate"), ("w3", "up"), ("w2", "proj"))]
_MAMBA = [
    ("backbone.embeddings.weight", "embed.weight"), ("backbone.norm_f.weight", "norm.weight"), ("lm_head.weight", "lm_head.weight"),
    ("backbone.layers.{i}.norm.weight", "blocks.{i}.norm.weight"),
] + [(f"backbone.layers.{{i}}.mixer.{n}", f"blocks.{{i}}.mixer.{n}") for n in (
    "in_proj.weight", "in_proj.bias", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
    "A_log", "D", "out_proj.weight", "out_proj.bias")]


def _rules(config: ModelConfig, architecture: str) -> list[tuple[str, str]]:
    if architecture == "MambaForCausalLM":
        return _MAMBA
    if architecture == "MixtralForCausalLM":
        return _LLAMA + _MIXTRAL
    return _LLAMA + _LLAMA_MLP


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)") + "$")


def _rename(names, rules: list[tuple[str, str]], reverse: bool = False) -> dict[str, str]:
    compiled = [(_compile(b if reverse else a), a if reverse else b) for a, b in rules]
    mapping = {}
    for name in names:
        for pattern, target in compiled:
            match = pattern.match(name)
            if match:
                mapping[name] = target.format(**match.groupdict())
                break
    return mapping


def _mean_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    extra = weight.float().mean(dim=0, keepdim=True).expand(rows - weight.size(0), -1).to(weight.dtype)
    return torch.cat((weight, extra), dim=0)


def state_from_hf(tensors: dict[str, torch.Tensor], config: ModelConfig, architecture: str) -> dict[str, torch.Tensor]:
    """Our state dict from HF tensors (names checked against a freshly built model's)."""
    from trainer.models import build_model

    tensors = dict(tensors)
    if architecture == "GPT2LMHeadModel":
        tensors = _gpt2_to_llama_names(tensors, config)
        architecture = "GPT2"
    if architecture == "MixtralForCausalLM":
        tensors = _unfuse_experts(tensors)
    with torch.device("meta"):
        reference = build_model(config).state_dict()
    rules = _GPT2_RULES if architecture == "GPT2" else _rules(config, architecture)
    mapping = _rename(tensors, rules)
    state = {mapping[k]: v for k, v in tensors.items() if k in mapping}
    if config.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    elif "lm_head.weight" not in state and "embed.weight" in state:
        raise TrainerError("the checkpoint has no lm_head.weight but its config does not tie embeddings",
                           "the safetensors files are incomplete")
    for name, ref in reference.items():  # absent biases (conv/attention/MLP) are zeros in HF's model
        if name not in state and name.endswith("bias"):
            state[name] = torch.zeros(ref.shape, dtype=state["embed.weight"].dtype)
    missing = sorted(set(reference) - set(state))
    unused = sorted(k for k in tensors if k not in mapping and not k.endswith(("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")))
    if missing or unused:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unused[:3]}"
        raise TrainerError(f"the weights do not match the {architecture} config ({detail})", "the model directory is incomplete or of another variant")
    for name, ref in reference.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise TrainerError(f"weight {name} has shape {tuple(state[name].shape)}, expected {tuple(ref.shape)}",
                               "config.json does not match the weights")
    return state


def _unfuse_experts(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 also writes Mixtral experts fused: mlp.experts.gate_up_proj (E, 2F, d), down_proj (E, d, F)."""
    out = {}
    for name, value in tensors.items():
        match = re.match(r"^model\.layers\.(\d+)\.mlp\.(experts\.gate_up_proj|experts\.down_proj|gate\.weight)$", name)
        if not match:
            out[name] = value
            continue
        layer, what = match.groups()
        prefix = f"model.layers.{layer}.block_sparse_moe"
        if what == "gate.weight":
            out[f"{prefix}.gate.weight"] = value
        elif what == "experts.gate_up_proj":
            gate, up = value.chunk(2, dim=1)
            for j in range(value.size(0)):
                out[f"{prefix}.experts.{j}.w1.weight"] = gate[j].contiguous()
                out[f"{prefix}.experts.{j}.w3.weight"] = up[j].contiguous()
        else:
            for j in range(value.size(0)):
                out[f"{prefix}.experts.{j}.w2.weight"] = value[j].contiguous()
    return out


# GPT-2: Conv1D weights are stored (in, out) and q/k/v are one fused c_attn.
_GPT2_RULES = [
    ("wte", "embed.weight"), ("wpe", "pos_embed.weight"), ("ln_f.weight", "norm.weight"), ("ln_f.bias", "norm.bias"),
    ("lm_head.weight", "lm_head.weight"),
    ("h.{i}.ln_1.weight", "blocks.{i}.attn_norm.weight"), ("h.{i}.ln_1.bias", "blocks.{i}.attn_norm.bias"),
    ("h.{i}.ln_2.weight", "blocks.{i}.mlp_norm.weight"), ("h.{i}.ln_2.bias", "blocks.{i}.mlp_norm.bias"),
    ("h.{i}.q.weight", "blocks.{i}.attn.q_proj.weight"), ("h.{i}.q.bias", "blocks.{i}.attn.q_proj.bias"),
    ("h.{i}.k.weight", "blocks.{i}.attn.k_proj.weight"), ("h.{i}.k.bias", "blocks.{i}.attn.k_proj.bias"),
    ("h.{i}.v.weight", "blocks.{i}.attn.v_proj.weight"), ("h.{i}.v.bias", "blocks.{i}.attn.v_proj.bias"),
    ("h.{i}.attn.c_proj.weight", "blocks.{i}.attn.o_proj.weight"), ("h.{i}.attn.c_proj.bias", "blocks.{i}.attn.o_proj.bias"),
    ("h.{i}.mlp.c_fc.weight", "blocks.{i}.mlp.fc.weight"), ("h.{i}.mlp.c_fc.bias", "blocks.{i}.mlp.fc.bias"),
    ("h.{i}.mlp.c_proj.weight", "blocks.{i}.mlp.proj.weight"), ("h.{i}.mlp.c_proj.bias", "blocks.{i}.mlp.proj.bias"),
]


def _gpt2_to_llama_names(tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in tensors.items():
        name = name.removeprefix("transformer.")
        name = {"wte.weight": "wte", "wpe.weight": "wpe"}.get(name, name)
        if name.endswith(("attn.bias", "attn.masked_bias")):
            continue
        match = re.match(r"^h\.(\d+)\.attn\.c_attn\.(weight|bias)$", name)
        if match:
            layer, kind = match.groups()
            parts = value.t().chunk(3, dim=0) if kind == "weight" else value.chunk(3)
            for letter, part in zip("qkv", parts):
                out[f"h.{layer}.{letter}.{kind}"] = part.contiguous()
            continue
        if re.match(r"^h\.\d+\.(attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$", name):
            value = value.t().contiguous()
        out[name] = value
    return out


def state_to_hf(state: dict[str, torch.Tensor], config: ModelConfig, architecture: str) -> dict[str, torch.Tensor]:
    """HF tensors for our state dict (the inverse of ``state_from_hf``)."""
    if architecture == "GPT2LMHeadModel":
        return _state_to_gpt2(state, config)
    mapping = _rename(state, _rules(config, architecture), reverse=True)
    out = {}
    for name, value in state.items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue
        if name not in mapping:
            raise TrainerError(f"weight {name} has no {architecture} name", "this model cannot be exported")
        out[mapping[name]] = value.detach().contiguous().clone()
    return out


def _state_to_gpt2(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    def get(name: str, like: str | None = None) -> torch.Tensor:
        if name in state:
            return state[name]
        return torch.zeros(state[like].shape[0], dtype=state[like].dtype)  # bias-free layers: zero bias

    out = {"transformer.wte.weight": state["embed.weight"], "transformer.wpe.weight": state["pos_embed.weight"],
           "transformer.ln_f.weight": state["norm.weight"], "transformer.ln_f.bias": get("norm.bias", "norm.weight")}
    if not config.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(config.n_layers):
        b, h = f"blocks.{i}", f"transformer.h.{i}"
        for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            out[f"{h}.{theirs}.weight"] = state[f"{b}.{ours}.weight"]
            out[f"{h}.{theirs}.bias"] = get(f"{b}.{ours}.bias", f"{b}.{ours}.weight")
        q, k, v = (state[f"{b}.attn.{p}_proj.weight"] for p in "qkv")
        out[f"{h}.attn.c_attn.weight"] = torch.cat((q, k, v), dim=0).t()
        out[f"{h}.attn.c_attn.bias"] = torch.cat([get(f"{b}.attn.{p}_proj.bias", f"{b}.attn.{p}_proj.weight") for p in "qkv"])
        for ours, theirs in (("attn.o_proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            out[f"{h}.{theirs}.weight"] = state[f"{b}.{ours}.weight"].t()
            out[f"{h}.{theirs}.bias"] = get(f"{b}.{ours}.bias", f"{b}.{ours}.weight")
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


# ---- tokenizers ---------------------------------------------------------------------------------


def _token_string(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _eos_tokens(directory: Path, hf: dict, tokenizer) -> list[str]:
    """The imported model's own end-of-text token(s), as strings."""
    names: list[str] = []
    config_path = directory / "tokenizer_config.json"
    if config_path.exists():
        name = _token_string(_read_json(config_path).get("eos_token"))
        if name:
            names.append(name)
    ids: list[int] = []
    for source in (hf, _read_json(directory / "generation_config.json") if (directory / "generation_config.json").exists() else {}):
        value = source.get("eos_token_id")
        ids += value if isinstance(value, list) else ([value] if isinstance(value, int) else [])
    names += [t for t in (tokenizer.id_to_token(i) for i in ids) if t]
    return sorted(set(names))


def import_tokenizer(directory: Path, hf: dict):
    """(tokenizers.Tokenizer with the chat tokens, chat metadata) for an HF model directory."""
    from tokenizers import AddedToken, Tokenizer

    from trainer.data.tokenizer import SPECIAL_TOKENS

    path = directory / "tokenizer.json"
    if not path.exists():
        raise TrainerError(f"no tokenizer.json in {directory}",
                           "save the fast tokenizer with transformers' AutoTokenizer.save_pretrained(DIR)")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception
        raise TrainerError(f"{path} is not a valid tokenizer: {str(exc)[:100]}", "download tokenizer.json again") from exc
    present = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is not None]
    missing = [t for t in SPECIAL_TOKENS if t not in present]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    eos = _eos_tokens(directory, hf, tokenizer)
    chat = {"stop_tokens": [t for t in eos if t not in SPECIAL_TOKENS], "reused_tokens": present, "added_tokens": missing}
    return tokenizer, chat


# ---- the commands -------------------------------------------------------------------------------


def import_hf(directory: str | Path, output: str | Path, dtype: str = "keep") -> dict:
    """Convert a local HF model directory into a checkpoint; returns a summary."""
    from trainer.checkpoint import save_checkpoint
    from trainer.data.tokenizer import TextTokenizer

    directory = Path(directory)
    hf = read_hf_config(directory)
    architecture = hf["architectures"][0]
    config = config_from_hf(hf)
    tokenizer, chat = import_tokenizer(directory, hf)
    state = state_from_hf(read_safetensors(directory), config, architecture)
    if dtype != "keep":
        target = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        state = {k: v.to(target) if v.is_floating_point() else v for k, v in state.items()}
    vocab_needed = tokenizer.get_vocab_size(with_added_tokens=True)
    resized_from = None
    if vocab_needed > config.vocab_size:
        resized_from = config.vocab_size
        state["embed.weight"] = _mean_rows(state["embed.weight"], vocab_needed)
        state["lm_head.weight"] = state["embed.weight"] if config.tie_embeddings else _mean_rows(state["lm_head.weight"], vocab_needed)
        config.vocab_size = vocab_needed
    chat["resized_embeddings_from"] = resized_from
    text_tokenizer = TextTokenizer(tokenizer)
    output = Path(output)
    source = {"format": "huggingface", "architecture": architecture, "path": str(directory.resolve()),
              "config": {k: v for k, v in hf.items() if isinstance(v, (int, float, str, bool, type(None)))}}
    save_checkpoint(output, model_state=state, model_config=config, tokenizer_json=text_tokenizer.to_str(),
                    tokenizer_hash=text_tokenizer.hash, kind="weights", stage="imported", step=0, source=source, chat=chat)
    tokenizer_path = output.with_name(output.stem + ".tokenizer.json")
    atomic_write_text(tokenizer_path, text_tokenizer.to_str())
    params = sum(v.numel() for k, v in state.items() if not (k == "lm_head.weight" and config.tie_embeddings))
    return {"architecture": architecture, "as": config.architecture, "parameters": params, "output": str(output),
            "tokenizer": str(tokenizer_path), "vocab_size": config.vocab_size, **chat}


def export_hf(checkpoint: str | Path, directory: str | Path) -> dict:
    """Write a checkpoint as an HF model directory (config, safetensors, tokenizer); returns a summary."""
    from safetensors.torch import save_file

    from trainer.checkpoint import load_checkpoint
    from trainer.data.chat_format import END, EOS

    payload = load_checkpoint(checkpoint)
    if payload.get("quantization"):
        raise TrainerError(f"{checkpoint} is quantized", "export the float checkpoint it was made from")
    config: ModelConfig = payload["config"]
    hf = hf_config_for(config)
    architecture = hf["architectures"][0]
    tensors = state_to_hf(payload["model"], config, architecture)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise TrainerError(f"{directory} exists and is not a directory", "choose another --output")
    directory.mkdir(parents=True, exist_ok=True)
    from trainer.data.tokenizer import tokenizer_from_string

    tokenizer = tokenizer_from_string(payload["tokenizer_json"]) if payload.get("tokenizer_json") else None
    if tokenizer is not None:
        stop_ids = [tokenizer.token_to_id(END), tokenizer.token_to_id(EOS)]
        hf.update(eos_token_id=stop_ids[1], pad_token_id=tokenizer.token_to_id("<|pad|>"), bos_token_id=None)
    dtypes = {v.dtype for v in tensors.values() if v.is_floating_point()}
    hf["dtype"] = str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32"
    hf["transformers_version"] = hf.get("transformers_version", "5.0.0")
    weights = directory / "model.safetensors"
    temporary = directory / ".model.safetensors.tmp"
    save_file(tensors, str(temporary), metadata={"format": "pt"})
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, weights)
    atomic_write_text(directory / "config.json", json.dumps(hf, indent=2))
    if tokenizer is not None:
        atomic_write_text(directory / "tokenizer.json", tokenizer.to_str())
        atomic_write_text(directory / "tokenizer_config.json", json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "pad_token": "<|pad|>",
            "model_max_length": config.max_seq_len, "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        }, indent=2))
        atomic_write_text(directory / "generation_config.json", json.dumps(
            {"eos_token_id": stop_ids, "pad_token_id": tokenizer.token_to_id("<|pad|>")}, indent=2))
    return {"architecture": architecture, "output": str(directory), "tensors": len(tensors),
            "bytes": weights.stat().st_size}


# Jinja chat template for transformers' apply_chat_template: the same text as render_text()
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}<|tool_result|>{% else %}<|{{ m['role'] }}|>{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<|image|>{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if m['tool_call'] is defined and m['tool_call'] %}<|tool_call|>{{ m['tool_call'] | tojson }}{% endif %}"
    "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

