"""Stage 9: weight-only int8 / int4 quantization of a trained checkpoint.

- int8: symmetric, one scale per output channel: ``w ≈ q * s``, q in [-127, 127].
- int4: asymmetric, one (scale, zero) per group of ``group_size`` input weights (32/64/128):
  ``w ≈ (q - 8) * s + z``, q in [0, 15], two per byte; scale and zero stored in bf16. This is the
  convention of PyTorch's int4 kernels (tinygemm). Each group's clipping range is searched to
  minimise the squared error (a few candidate ranges, as in HQQ/AWQ-style clipping).

Every ``nn.Linear`` is replaced (the MoE router excepted: it is tiny and routing is sensitive; see
``SKIP``); embeddings optionally (int8 per row). A layer whose input width does not divide by the
group size, or where the int4 kernel is unavailable, falls back to int8 for that layer.

Matmuls use PyTorch's own kernels (``torch._weight_int8pack_mm``, ``torch._weight_int4pack_mm_for_cpu``)
where they exist for the device and the layer's shape fits them (the int8 CPU kernel needs an input
width divisible by 16, the int4 one an output width divisible by 16). Each kernel is also checked
once per layer against the dequantized reference on first use (a wrong or missing kernel falls back
to dequantize-and-matmul, which is correct everywhere), and the activation dtype is chosen per device by timing (on CPU the int8
kernel is an order of magnitude slower with fp32 activations than with bf16). The choice is stored
in the checkpoint and reused when the device type matches.

The quantized checkpoint is the ordinary checkpoint format plus a ``quantization`` entry; the
runtime loads it directly (``trainer.checkpoint.load_model``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer import TrainerError

MODES = ("int8", "int4")
GROUP_SIZES = (32, 64, 128)
DEFAULT_GROUP_SIZE = 64
SKIP = ("router",)  # Linear layers kept in float (by name suffix)
_CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)


# ---- the number formats ----------------------------------------------------------------------


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 (N, K), scales float32 (N,)) with weight ≈ q * scales[:, None]."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scales


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return q.float() * scales.float()[:, None]


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(N, K) values 0..15 -> (N, K/2) uint8: even columns in the low nibble, odd in the high."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """(N, K/2) uint8 -> (N, K) uint8 values 0..15."""
    codes = torch.empty(packed.size(0), packed.size(1) * 2, dtype=torch.uint8, device=packed.device)
    codes[:, 0::2] = packed & 0x0F
    codes[:, 1::2] = packed >> 4
    return codes


def _int4_codes(w: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Codes, bf16 scales and zeros for groups w (N, G, g) clipped to [lo, hi] (N, G, 1)."""
    scale = ((hi - lo) / 15).clamp(min=1e-8).to(torch.bfloat16)
    zero = (lo + 8 * scale.float()).to(torch.bfloat16)
    s, z = scale.float(), zero.float()
    q = torch.round((w - (z - 8 * s)) / s).clamp_(0, 15)
    return q, scale, zero


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(packed uint8 (N, K/2), scales bf16 (N, K/g), zeros bf16 (N, K/g)); w ≈ (q - 8) * s + z.

    Per group, the range [min, max] is shrunk by each of a few ratios and the one with the least
    squared error kept, which matters for groups with one outlier.
    """
    w = weight.detach().float()
    N, K = w.shape
    if K % group_size or K % 2:
        raise ValueError(f"input width {K} does not divide by the group size {group_size}")
    groups = w.reshape(N, K // group_size, group_size)
    lo0, hi0 = groups.amin(-1, keepdim=True).clamp(max=0), groups.amax(-1, keepdim=True).clamp(min=0)
    best_err = torch.full(lo0.shape, float("inf"))
    best = None
    for ratio in _CLIP_RATIOS:
        q, scale, zero = _int4_codes(groups, lo0 * ratio, hi0 * ratio)
        err = ((q - 8) * scale.float() + zero.float() - groups).pow(2).sum(-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        if best is None:
            best = [q, scale, zero]
        else:
            best[0] = torch.where(better, q, best[0])
            best[1] = torch.where(better, scale, best[1])
            best[2] = torch.where(better, zero, best[2])
    q, scale, zero = best
    return pack_int4(q.reshape(N, K)), scale.squeeze(-1).contiguous(), zero.squeeze(-1).contiguous()


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    N = packed.size(0)
    q = unpack_int4(packed).to(dtype).view(N, -1, group_size)  # (N, groups, g)
    return ((q - 8) * scales.to(dtype).unsqueeze(-1) + zeros.to(dtype).unsqueeze(-1)).view(N, -1)


# ---- the layers ---------------------------------------------------------------------------------


PREFILL_ROWS = 16  # from this many rows, dequantize + GEMM beats the weight-only kernels (measured, CPU)
_CHUNK_ROWS = 4096  # the reference path dequantizes this many output rows at a time (bounded memory)


def _kernel_agrees(fast: Callable[[torch.Tensor], torch.Tensor], reference: Callable[[torch.Tensor], torch.Tensor],
                   in_features: int, device, dtype) -> bool:
    """Does the fast kernel give the dequantized reference's result on this device and dtype?"""
    try:
        x = torch.randn(3, in_features, device=device, generator=torch.Generator(device=device).manual_seed(0)).to(dtype)
        got = fast(x).float()
        want = reference(x).float()
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    scale = want.norm().clamp(min=1e-6)
    return bool(torch.isfinite(got).all()) and float((got - want).norm() / scale) < 3e-2


class _QuantLinear(nn.Module):
    """Shared plumbing: compute dtype, bias, and the choice of path per call.

    A few rows (decoding) go through the weight-only kernel when it is usable on this device,
    dtype and shape; many rows (a prompt) dequantize the weight and run one ordinary GEMM, which
    is faster than the weight-only kernels there; anything else takes the reference path.
    """

    mode = ""

    def __init__(self, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.compute_dtype: torch.dtype | None = None  # None: the input's dtype
        self._fast: dict[tuple, bool] = {}

    def _use_kernel(self, device, dtype) -> bool:
        key = (device.type, dtype)
        if key not in self._fast:
            self._fast[key] = self._kernel_available(device, dtype) and _kernel_agrees(
                lambda x: self._kernel(x), lambda x: self._reference(x), self.in_features, device, dtype)
        return self._fast[key]

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantize (a block of output rows at a time) and multiply: correct on any device."""
        if self.out_features <= _CHUNK_ROWS:
            return F.linear(x, self.dequantized(x.dtype, 0, self.out_features))
        return torch.cat([F.linear(x, self.dequantized(x.dtype, start, min(start + _CHUNK_ROWS, self.out_features)))
                          for start in range(0, self.out_features, _CHUNK_ROWS)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.compute_dtype or x.dtype
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(dtype).contiguous()
        if x2.size(0) < PREFILL_ROWS and self._use_kernel(x2.device, dtype):
            y = self._kernel(x2)
        else:
            y = self._reference(x2)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(_QuantLinear):
    """y = x @ (q * s)^T + b with q int8 (N, K) and one scale per output channel."""

    mode = "int8"

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        layer.weight_int8, layer.scales = quantize_int8(linear.weight)
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().float().clone())
        return layer

    def _kernel_available(self, device, dtype) -> bool:
        # PyTorch 2.13's CPU kernel reads past the row (wrong results, even a segfault at width 4)
        # unless the input width is a multiple of 16 (measured here); such layers use the fallback
        return hasattr(torch.ops.aten, "_weight_int8pack_mm") and device.type in ("cpu", "mps", "cuda") \
            and self.in_features % 16 == 0

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(x, self.weight_int8, self.scales.to(x.dtype))

    def dequantized(self, dtype: torch.dtype = torch.float32, start: int = 0, end: int | None = None) -> torch.Tensor:
        rows = slice(start, end)
        return self.weight_int8[rows].to(dtype) * self.scales[rows].to(dtype).unsqueeze(1)


class Int4Linear(_QuantLinear):
    """Group-wise int4: (q - 8) * s + z per group of ``group_size`` inputs, two codes per byte."""

    mode = "int4"

    def __init__(self, in_features: int, out_features: int, group_size: int = DEFAULT_GROUP_SIZE, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias)
        self.group_size = group_size
        groups = in_features // group_size
        self.register_buffer("weight_int4", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=torch.bfloat16))
        self.register_buffer("zeros", torch.zeros(out_features, groups, dtype=torch.bfloat16))
        self._packed: dict = {}
        self._scale_zeros: dict = {}

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        layer = cls(linear.in_features, linear.out_features, group_size, linear.bias is not None)
        layer.weight_int4, layer.scales, layer.zeros = quantize_int4(linear.weight, group_size)
        if linear.bias is not None:
            layer.bias = nn.Parameter(linear.bias.detach().float().clone())
        return layer

    def _kernel_available(self, device, dtype) -> bool:
        return device.type == "cpu" and hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and self.out_features % 16 == 0

    def _kernel_weights(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._packed:  # the kernel's own layout (N, K/2), once per device
            self._packed[device] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(unpack_int4(self.weight_int4).int(), 1)
        key = (device, dtype)
        if key not in self._scale_zeros:  # (K/g, N, 2) in the activation dtype
            self._scale_zeros[key] = torch.stack((self.scales, self.zeros), dim=-1).transpose(0, 1).contiguous().to(dtype)
        return self._packed[device], self._scale_zeros[key]

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        packed, scale_zeros = self._kernel_weights(x.device, x.dtype)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, self.group_size, scale_zeros)

    def dequantized(self, dtype: torch.dtype = torch.float32, start: int = 0, end: int | None = None) -> torch.Tensor:
        rows = slice(start, end)
        return dequantize_int4(self.weight_int4[rows], self.scales[rows], self.zeros[rows], self.group_size, dtype)

    def _apply(self, fn, recurse=True):  # .to(device) invalidates the kernel-layout copies
        self._packed, self._scale_zeros, self._fast = {}, {}, {}
        return super()._apply(fn, recurse)


class Int8Embedding(nn.Module):
    """Embedding rows stored as int8 with one scale per row (looked up, then scaled)."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(num_embeddings))
        self.compute_dtype: torch.dtype | None = None

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        layer = cls(embedding.num_embeddings, embedding.embedding_dim)
        layer.weight_int8, layer.scales = quantize_int8(embedding.weight)
        return layer

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(idx, self.weight_int8).float()
        return rows * self.scales[idx].unsqueeze(-1)


# ---- whole models -------------------------------------------------------------------------------


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _layer_mode(linear: nn.Linear, mode: str, group_size: int) -> str:
    if mode == "int4" and (linear.in_features % group_size or linear.in_features % 2):
        return "int8"  # too narrow for the group size (e.g. Mamba's dt_proj)
    return mode


def quantize_model(model: nn.Module, mode: str, group_size: int = DEFAULT_GROUP_SIZE, embeddings: bool = False) -> dict:
    """Replace the model's Linear layers (and optionally its embedding) in place.

    Returns the layout ``{"mode", "group_size", "embeddings", "layers": {name: "int8"|"int4"}}``
    that the checkpoint stores so the same shells can be rebuilt at load time.
    """
    if mode not in MODES:
        raise TrainerError(f"unknown quantization '{mode}'", f"choose from {', '.join(MODES)}")
    if mode == "int4" and group_size not in GROUP_SIZES:
        raise TrainerError(f"unsupported int4 group size {group_size}", f"choose from {', '.join(map(str, GROUP_SIZES))}")
    layers: dict[str, str] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not name.endswith(SKIP):
            layer_mode = _layer_mode(module, mode, group_size)
            quantized = Int4Linear.from_linear(module, group_size) if layer_mode == "int4" else Int8Linear.from_linear(module)
            _replace(model, name, quantized.to(module.weight.device))
            layers[name] = layer_mode
    if embeddings:
        for name, module in list(model.named_modules()):
            if isinstance(module, nn.Embedding):
                _replace(model, name, Int8Embedding.from_embedding(module).to(module.weight.device))
                layers[name] = "int8-embedding"
    return {"mode": mode, "group_size": group_size if mode == "int4" else None, "embeddings": embeddings, "layers": layers}


def install_shells(model: nn.Module, layout: dict) -> None:
    """Swap in empty quantized modules per ``layout`` so a quantized state dict loads into them."""
    for name, layer_mode in layout["layers"].items():
        module = model.get_submodule(name)
        if layer_mode == "int8-embedding":
            shell = Int8Embedding(module.num_embeddings, module.embedding_dim)
        elif layer_mode == "int4":
            shell = Int4Linear(module.in_features, module.out_features, layout["group_size"], module.bias is not None)
        else:
            shell = Int8Linear(module.in_features, module.out_features, module.bias is not None)
        _replace(model, name, shell)


def dequantize_model(model: nn.Module) -> None:
    """Float layers back in place of the quantized ones (weights = codes x scales), so a quantized
    checkpoint can be trained again, e.g. by stage 10 when only the shipped int8 model exists.
    Tied output weights are tied to the (float or dequantized) embedding again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, _QuantLinear):
            linear = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            linear.weight = nn.Parameter(module.dequantized(torch.float32))
            if module.bias is not None:
                linear.bias = nn.Parameter(module.bias.detach().float().clone())
            _replace(model, name, linear)
        elif isinstance(module, Int8Embedding):
            embedding = nn.Embedding(module.num_embeddings, module.embedding_dim)
            embedding.weight = nn.Parameter(module.weight_int8.float() * module.scales.float().unsqueeze(1))
            _replace(model, name, embedding)
    config = getattr(model, "config", None)
    if config is not None and config.tie_embeddings and isinstance(getattr(model, "lm_head", None), nn.Linear):
        model.lm_head.weight = model.embed.weight


def dequantized_payload(payload: dict) -> dict:
    """A loaded quantized checkpoint as a float one (same entries; weights = codes x scales), so it
    can be trained again: stage 10 on the shipped model, or ``assistant train --checkpoint model_int8.pth``."""
    from trainer.checkpoint import model_from_payload

    model = model_from_payload(payload)
    dequantize_model(model)
    float_payload = {k: v for k, v in payload.items() if k != "quantization"}
    float_payload["model"] = {k: v.detach() for k, v in model.state_dict().items()}
    float_payload["dequantized_from"] = payload["quantization"]["mode"]
    return float_payload


def quantized_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (_QuantLinear, Int8Embedding))]


def set_compute_dtype(model: nn.Module, dtype: torch.dtype | None) -> None:
    for module in quantized_modules(model):
        module.compute_dtype = dtype


def candidate_dtypes(device: torch.device) -> list[torch.dtype]:
    if device.type == "cuda":
        return [torch.bfloat16, torch.float16] if torch.cuda.is_bf16_supported() else [torch.float16]
    if device.type == "mps":
        return [torch.float16, torch.float32]
    return [torch.float32, torch.bfloat16]


def choose_activation_dtype(model: nn.Module, device: torch.device, steps: int = 8) -> tuple[torch.dtype, dict[str, float]]:
    """Time a few greedy decode steps with each candidate activation dtype; return the fastest.

    The candidates are interleaved and each is timed three times (the best kept), so a busy
    machine does not favour whichever ran first.
    """
    from trainer.decode import DecodeTimes, decode_tokens

    candidates = candidate_dtypes(device)
    best_rate = {str(d).removeprefix("torch."): 0.0 for d in candidates}
    prompt = list(range(1, 17))
    for _ in range(3):
        for dtype in candidates:
            set_compute_dtype(model, dtype)
            times = DecodeTimes()
            try:
                for _ in decode_tokens(model, prompt, steps, context=len(prompt) + steps, times=times):
                    pass
            except (RuntimeError, TypeError):
                continue
            rate = (times.tokens - 1) / times.decode_s if times.decode_s > 0 else 0.0
            key = str(dtype).removeprefix("torch.")
            best_rate[key] = max(best_rate[key], rate)
    name = max(best_rate, key=best_rate.get)
    chosen = getattr(torch, name)
    set_compute_dtype(model, chosen)
    return chosen, best_rate


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the Linear weights as stored: float weights, or quantized codes plus scales."""
    total = 0
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel() * module.weight.element_size()
        elif isinstance(module, Int8Linear):
            total += module.weight_int8.numel() + module.scales.numel() * module.scales.element_size()
        elif isinstance(module, Int4Linear):
            total += module.weight_int4.numel() + 2 * module.scales.numel() * module.scales.element_size()
    return total


def float32_linear_bytes(model: nn.Module) -> int:
    """Bytes the same Linear weights take in float32 (the baseline of the size ratio)."""
    total = 0
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel() * 4
        elif isinstance(module, _QuantLinear):
            total += module.in_features * module.out_features * 4
    return total


# ---- the stage ----------------------------------------------------------------------------------


def default_output(checkpoint: str | Path, mode: str) -> Path:
    """models/code_model_best.pth -> models/code_model_best_int8.pth (the seed's model_int8.pth)."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}_{mode}{path.suffix or '.pth'}")


def _find_validation_tokens(data_dir: str | Path | None, stage: str | None, tokenizer_hash: str | None):
    """The validation split the checkpoint's stage trained on, if it is there and matches."""
    import numpy as np

    from trainer.data.dataset import open_tokens
    from trainer.data.prepare import read_manifest

    if data_dir is None:
        return None, None
    directory = Path(data_dir)
    path = directory / f"{stage}_val.npy"
    if not path.exists():
        return None, f"no validation data at {path}"
    manifest = read_manifest(directory, stage)
    if tokenizer_hash and manifest.get("tokenizer_hash") not in (None, tokenizer_hash):
        raise TrainerError(f"the data in {directory} was prepared with another tokenizer than the checkpoint's",
                           "pass --data-dir with data prepared for this model")
    tokens = open_tokens(path)
    return np.asarray(tokens), str(path)


def run_quantization(checkpoint: str | Path, mode: str, *, group_size: int = DEFAULT_GROUP_SIZE, embeddings: bool = False,
                     output: str | Path | None = None, data_dir: str | Path | None = "data/processed", stage: str | None = None,
                     eval_windows: int = 32, seq_len: int | None = None, device: str = "auto", decode_tokens: int = 64,
                     on_log: Callable[[str], None] | None = None) -> dict:
    """Quantize ``checkpoint`` and write the quantized checkpoint; return the report it stores.

    The report: Linear-weight and file size before/after, validation perplexity before/after (when
    the checkpoint's validation data is found under ``data_dir``; windows of ``seq_len`` tokens,
    by default the length it was trained on, at most 256), and greedy decode tokens/s before/after
    on ``device``.
    """
    from common.device import choose_device
    from trainer.checkpoint import load_checkpoint, save_checkpoint, weights_digest
    from trainer.evaluate import decode_speed, perplexity
    from trainer.layout import prepare_for_decoding
    from trainer.models import build_model

    log = on_log or (lambda line: None)
    if mode not in MODES:
        raise TrainerError(f"unknown quantization '{mode}'", f"choose from {', '.join(MODES)}")
    source = Path(checkpoint)
    payload = load_checkpoint(source)
    if payload.get("quantization"):
        raise TrainerError(f"{source} is already quantized ({payload['quantization']['mode']})", "quantize the float checkpoint")
    config = payload["config"]
    target_device = choose_device(device)
    stage = stage or payload.get("stage") or "language"
    val, val_source = _find_validation_tokens(data_dir, stage, payload.get("tokenizer_hash"))

    model = build_model(config)
    model.load_state_dict(payload["model"])
    model.eval().to(target_device)
    prompt = [int(t) for t in val[:64]] if val is not None else list(range(1, 65))
    report: dict[str, Any] = {"mode": mode, "group_size": group_size if mode == "int4" else None, "device": str(target_device),
                              "source": str(source), "validation_data": val_source}

    trained_len = (payload.get("train_config") or {}).get("seq_len") or config.max_seq_len
    seq_len = seq_len or min(256, trained_len)  # windows the model was trained on
    before_ppl = perplexity(model, val, seq_len, eval_windows) if val is not None else None
    float_linear = linear_weight_bytes(model)
    float_file = source.stat().st_size
    float_model = build_model(config)  # timed as the runtime runs it (its decoding layout)
    float_model.load_state_dict(payload["model"])
    float_model.eval().to(target_device)
    prepare_for_decoding(float_model)
    float_speed = decode_speed(float_model, prompt, decode_tokens)

    started = time.perf_counter()
    layout = quantize_model(model, mode, group_size, embeddings)
    quantized_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    quantize_s = time.perf_counter() - started
    act_dtype, rates = choose_activation_dtype(model, target_device)
    log(f"activation dtype on {target_device.type}: {str(act_dtype).removeprefix('torch.')} "
        f"(decode tok/s by dtype: {', '.join(f'{k} {v:.0f}' for k, v in rates.items())})")
    after_ppl = perplexity(model, val, seq_len, eval_windows) if val is not None else None
    quant_speed = decode_speed(model, prompt, decode_tokens)
    # the float model timed again after, so a change in machine load shows on both sides
    float_speed = max(float_speed, decode_speed(float_model, prompt, decode_tokens))
    del float_model

    quant_linear = linear_weight_bytes(model)
    report.update({
        "size": {"linear_bytes_before": float32_linear_bytes(model), "linear_bytes_before_as_stored": float_linear,
                 "linear_bytes_after": quant_linear, "linear_ratio": float32_linear_bytes(model) / quant_linear,
                 "file_bytes_before": float_file},
        "perplexity": None if before_ppl is None else {
            "before": before_ppl["perplexity"], "after": after_ppl["perplexity"],
            "change_pct": 100 * (after_ppl["perplexity"] / before_ppl["perplexity"] - 1), "tokens": before_ppl["tokens"]},
        "decode_tokens_per_s": {"before": float_speed, "after": quant_speed, "speedup": quant_speed / float_speed if float_speed else None},
        "activation_dtype_rates": rates,
        "quantize_seconds": quantize_s,
    })
    layout["activation_dtype"] = {target_device.type: str(act_dtype).removeprefix("torch.")}
    layout["report"] = report
    layout["source_weights_sha256"] = payload.get("weights_sha256") or weights_digest(payload["model"])
    out = Path(output) if output else default_output(source, mode)
    extra = {k: v for k, v in payload.items() if k in ("stage", "step", "evals", "parameters", "best_val", "source", "chat")}
    save_checkpoint(out, model_state=quantized_state, model_config=config, tokenizer_json=payload.get("tokenizer_json"),
                    tokenizer_hash=payload.get("tokenizer_hash"), kind="quantized", quantization=layout, **extra)
    report["size"]["file_bytes_after"] = out.stat().st_size
    report["output"] = str(out)
    # the file size is known only once written: store the complete report (a second atomic write)
    layout["report"] = report
    save_checkpoint(out, model_state=quantized_state, model_config=config, tokenizer_json=payload.get("tokenizer_json"),
                    tokenizer_hash=payload.get("tokenizer_hash"), kind="quantized", quantization=layout, **extra)
    return report


def format_report(report: dict) -> list[str]:
    """The lines ``assistant quantize`` prints."""
    size = report["size"]
    mib = 2**20
    lines = [
        f"quantized {report['source']} -> {report['output']} ({report['mode']}"
        + (f", group {report['group_size']}" if report.get("group_size") else "") + ")",
        (f"size: Linear weights {size['linear_bytes_before'] / mib:.2f} MiB fp32 -> {size['linear_bytes_after'] / mib:.2f} MiB "
         f"({size['linear_ratio']:.2f}x smaller); file {size['file_bytes_before'] / mib:.2f} MiB -> "
         f"{size['file_bytes_after'] / mib:.2f} MiB"),
    ]
    ppl = report.get("perplexity")
    if ppl:
        lines.append(f"validation perplexity: {ppl['before']:.3f} -> {ppl['after']:.3f} ({ppl['change_pct']:+.2f}%) "
                     f"on {ppl['tokens']} tokens")
    else:
        lines.append(f"validation perplexity: not measured ({report.get('validation_data') or 'no data'}; pass --data-dir)")
    speed = report["decode_tokens_per_s"]
    lines.append(f"decode on {report['device']}: {speed['before']:.1f} -> {speed['after']:.1f} tokens/s"
                 + (f" ({speed['speedup']:.2f}x)" if speed.get("speedup") else ""))
    return lines


def activation_dtype_for(layout: dict, device: torch.device) -> str | None:
    return (layout.get("activation_dtype") or {}).get(device.type)

