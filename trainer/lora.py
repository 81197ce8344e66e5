"""LoRA adapters on the Linear layers of every architecture (Hu et al., 2021).

A wrapped layer computes ``y = W x + b + (alpha / r) * B (A x)`` with the base ``W`` frozen and
only ``A`` (r, in) and ``B`` (out, r) trained; ``B`` starts at zero, so an adapter starts as the
identity. The adapter lives *on* the Linear (parameters ``lora_A``/``lora_B`` and a forward hook),
so the base weights keep their names and a checkpoint's state dict loads unchanged.

PEFT was considered: it wraps modules into new classes (renaming the state dict) and knows nothing
of our Mamba/MoE layers' names, so this small module of our own fits better. The file format is
ours too: an adapter file is a torch zip with the adapter's tensors, its rank/alpha/targets, and
the SHA-256 of the base weights it was trained on (loading it on another base is refused).

Targets: ``all-linear`` (every Linear but the output head and the MoE router), or a comma list of
layer names (``q_proj,v_proj``, ``fc,proj``, ``in_proj,out_proj``...), matched on the last part of
the module name.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.atomic import atomic_writer
from trainer import TrainerError

ADAPTER_FORMAT = "assistant-lora-adapter"
EXCLUDED = ("lm_head", "router")  # the output head (often tied) and the MoE router stay full-rank/frozen


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: str = "all-linear"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise TrainerError(f"--lora-rank {self.rank} must be at least 1")
        if self.alpha <= 0:
            raise TrainerError(f"--lora-alpha {self.alpha} must be positive")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def target_names(self) -> set[str] | None:
        if self.targets.strip() in ("", "all-linear", "all"):
            return None
        return {t.strip() for t in self.targets.split(",") if t.strip()}


def _lora_hook(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    x = inputs[0]
    if module.lora_dropout and module.training:
        x = F.dropout(x, module.lora_dropout)
    delta = F.linear(F.linear(x.to(module.lora_A.dtype), module.lora_A), module.lora_B)
    return output + (module.lora_scaling * delta).to(output.dtype)


def target_modules(model: nn.Module, config: LoRAConfig) -> list[tuple[str, nn.Linear]]:
    """The Linear layers an adapter with ``config`` wraps, in model order."""
    wanted = config.target_names()
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        last = name.rsplit(".", 1)[-1]
        if wanted is None:
            if last in EXCLUDED:
                continue
        elif last not in wanted:
            continue
        found.append((name, module))
    if not found:
        known = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise TrainerError(f"--lora-targets '{config.targets}' matches no Linear layer of this model",
                           f"choose from all-linear or {', '.join(known)}")
    return found


def apply_lora(model: nn.Module, config: LoRAConfig, freeze_base: bool = True) -> list[str]:
    """Add a zero-initialised adapter to the target layers; freeze everything else. Returns the names."""
    if has_lora(model):
        raise TrainerError("the model already carries an adapter", "merge or remove it first")
    if freeze_base:
        for p in model.parameters():
            p.requires_grad_(False)
    names = []
    for name, linear in target_modules(model, config):
        w = linear.weight
        a = torch.empty(config.rank, linear.in_features, device=w.device, dtype=torch.float32)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        linear.lora_A = nn.Parameter(a)
        linear.lora_B = nn.Parameter(torch.zeros(linear.out_features, config.rank, device=w.device, dtype=torch.float32))
        linear.lora_scaling = config.scaling
        linear.lora_dropout = config.dropout
        linear._lora_handle = linear.register_forward_hook(_lora_hook)
        names.append(name)
    model.lora_config = config
    return names


def _wrapped(model: nn.Module):
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and hasattr(module, "_lora_handle"):
            yield name, module


def has_lora(model: nn.Module) -> bool:
    return any(True for _ in _wrapped(model))


def _strip(module: nn.Linear) -> None:
    module._lora_handle.remove()
    for attr in ("lora_A", "lora_B"):
        delattr(module, attr)
    for attr in ("lora_scaling", "lora_dropout", "_lora_handle"):
        module.__dict__.pop(attr, None)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight (W += s * B A) and remove it; returns layers merged."""
    count = 0
    with torch.no_grad():
        for _, module in list(_wrapped(model)):
            delta = module.lora_scaling * (module.lora_B.float() @ module.lora_A.float())
            module.weight.add_(delta.to(module.weight.dtype))
            _strip(module)
            count += 1
    model.__dict__.pop("lora_config", None)
    for p in model.parameters():
        p.requires_grad_(True)
    return count


def remove_lora(model: nn.Module) -> None:
    """Drop the adapters, leaving the base model as it was."""
    for _, module in list(_wrapped(model)):
        _strip(module)
    model.__dict__.pop("lora_config", None)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for name, module in _wrapped(model):
        state[f"{name}.lora_A"] = module.lora_A.detach().cpu().clone()
        state[f"{name}.lora_B"] = module.lora_B.detach().cpu().clone()
    return state


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for _, m in _wrapped(model) for p in (m.lora_A, m.lora_B)]


def save_adapter(path: str | Path, model: nn.Module, base_sha256: str | None, **extra: Any) -> Path:
    """Write the adapter (only its tensors and settings) atomically."""
    config = getattr(model, "lora_config", None)
    if config is None:
        raise TrainerError("the model has no adapter to save")
    payload = {"format": ADAPTER_FORMAT, "version": 1, "created": time.time(), "lora": asdict(config),
               "base_weights_sha256": base_sha256, "tensors": lora_state_dict(model), **extra}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    with atomic_writer(path, "wb") as handle:
        handle.write(buffer.getbuffer())
    return path


def read_adapter(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"adapter not found: {path}", "check the path given to --adapter")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainerError(f"adapter {path} is corrupt or truncated ({type(exc).__name__})", "use another adapter") from exc
    if not isinstance(payload, dict) or payload.get("format") != ADAPTER_FORMAT:
        raise TrainerError(f"{path} is not a LoRA adapter file", "adapters are written by 'assistant train --lora-rank N'")
    return payload


def load_adapter(model: nn.Module, path: str | Path, base_sha256: str | None = None, merge: bool = False) -> dict:
    """Attach the adapter at ``path`` to ``model`` (optionally merging it); returns its payload.

    ``base_sha256``: the weights digest of the model's checkpoint; an adapter trained on other
    weights is refused, since its low-rank update means nothing there."""
    payload = read_adapter(path)
    expected = payload.get("base_weights_sha256")
    if base_sha256 and expected and expected != base_sha256:
        raise TrainerError(f"adapter {path} was trained on another base model",
                           "load it with the checkpoint it was trained from")
    config = LoRAConfig(**payload["lora"])
    apply_lora(model, config, freeze_base=False)
    tensors = payload["tensors"]
    modules = dict(_wrapped(model))
    missing = [n for n in modules if f"{n}.lora_A" not in tensors]
    if missing or len(tensors) != 2 * len(modules):
        remove_lora(model)
        raise TrainerError(f"adapter {path} does not fit this model's layers", "load it with the model it was trained on")
    with torch.no_grad():
        for name, module in modules.items():
            a, b = tensors[f"{name}.lora_A"], tensors[f"{name}.lora_B"]
            if a.shape != module.lora_A.shape or b.shape != module.lora_B.shape:
                remove_lora(model)
                raise TrainerError(f"adapter {path} has the wrong shape at {name}", "load it with the model it was trained on")
            module.lora_A.copy_(a)
            module.lora_B.copy_(b)
    if merge:
        merge_lora(model)
    return payload
