"""Load a checkpoint (float or quantized) for generation on the chosen device and dtype."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.device import choose_device
from common.errors import UsageError
from trainer.checkpoint import load_model
from trainer.data.chat_format import stop_token_ids
from trainer.decode import context_limit

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready to generate: weights on ``device``, its tokenizer, and what was loaded."""

    model: Any
    tokenizer: Any
    config: Any
    device: torch.device
    dtype: torch.dtype  # of the float weights and activations
    path: Path
    quantization: dict | None = None
    activation_dtype: torch.dtype | None = None  # of the quantized matmuls
    metadata: dict = field(default_factory=dict)

    @property
    def stop_ids(self) -> list[int]:
        return stop_token_ids(self.tokenizer)

    @property
    def context_window(self) -> int:
        """Tokens the prompt and reply may fill together (the trained length for every architecture)."""
        return context_limit(self.config) or self.config.max_seq_len

    def describe(self) -> str:
        c = self.config
        quant = f", {self.quantization['mode']} (matmuls in {str(self.activation_dtype).removeprefix('torch.')})" if self.quantization else ""
        return f"{c.architecture} d{c.d_model} x{c.n_layers}, {str(self.dtype).removeprefix('torch.')}{quant} on {self.device}"


def _default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load(path: str | Path, device: str = "auto", dtype: str | None = None, adapter: str | Path | None = None) -> LoadedModel:
    """Load ``path`` for inference. ``dtype`` (float32/bfloat16/float16) applies to float weights;
    a quantized checkpoint keeps its codes and runs its matmuls in the activation dtype recorded
    for this device type (or measured now, when it was quantized on another kind of device).

    ``adapter``: a LoRA adapter file trained on this checkpoint, merged into the float weights at
    load time, so one base serves several adapters (switching is loading with another one)."""
    from trainer.layout import prepare_for_decoding
    from trainer.quantize import choose_activation_dtype, set_compute_dtype

    target = choose_device(device)
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"unknown dtype '{dtype}'", "use float32, bfloat16 or float16")
    path = resolve_model_path(path)
    model, tokenizer, payload = load_model(path)
    if adapter is not None:
        from trainer.lora import load_adapter

        if payload.get("quantization"):
            raise UsageError(f"{path} is quantized: an adapter cannot be merged into its integer weights",
                             "load the float checkpoint with --adapter, or quantize the merged model")
        model = model.float()  # merge in float32 whatever the stored dtype; the dtype below applies after
        load_adapter(model, adapter, base_sha256=payload.get("weights_sha256"), merge=True)
        payload["adapter"] = str(adapter)
    float_dtype = DTYPES[dtype] if dtype else _default_dtype(target)
    if payload.get("quantization"):
        _move_quantized(model, target, float_dtype)
    else:
        model.to(device=target, dtype=float_dtype)
    loaded = LoadedModel(model=model, tokenizer=tokenizer, config=payload["config"], device=target, dtype=float_dtype,
                         path=Path(path), quantization=payload.get("quantization"),
                         metadata={k: payload.get(k) for k in ("stage", "step", "kind", "source", "chat", "adapter")})
    prepare_for_decoding(model)  # float Linear weights in the layout that decodes fastest here
    if loaded.quantization:
        recorded = (loaded.quantization.get("activation_dtype") or {}).get(target.type)
        if recorded in DTYPES:
            loaded.activation_dtype = DTYPES[recorded]
            set_compute_dtype(model, loaded.activation_dtype)
        else:
            loaded.activation_dtype, _ = choose_activation_dtype(model, target)
    return loaded


def resolve_model_path(path: str | Path) -> Path:
    """A checkpoint file as given; a models directory means its promoted model (stage 10's registry),
    read once, so a promotion happening meanwhile gives the old model or the new one, never a mix."""
    from trainer.continual.registry import promoted_model

    path = Path(path)
    if path.is_dir():
        promoted = promoted_model(path)
        if promoted is None:
            raise UsageError(f"{path} is a directory without a promoted model",
                             "pass a checkpoint file, or run 'assistant retrain --base CHECKPOINT' there first")
        return promoted
    return path


def _move_quantized(model, device: torch.device, float_dtype: torch.dtype) -> None:
    """Move a quantized model: codes keep their integer dtypes, float tensors take ``float_dtype``."""
    model.to(device)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.is_floating_point() and param.dtype != float_dtype:
                module._parameters[name] = torch.nn.Parameter(param.detach().to(float_dtype), requires_grad=False)
    if model.config.tie_embeddings and isinstance(model.lm_head, torch.nn.Linear):
        model.lm_head.weight = model.embed.weight
