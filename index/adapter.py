"""The code-tuned embedder: a LoRA adapter over all-MiniLM-L6-v2, merged into its weights on first use.

all-MiniLM-L6-v2 was trained on natural-language sentence pairs; ``bench/train_embedder.py`` tunes it
on (docstring line -> function chunk) pairs from code the retrieval benchmark never uses. Only
low-rank factors of the encoder's linear layers train (W' = W + alpha/rank · B·A), so the result
ships in git (``index/embedder_adapter.safetensors``, fp16). ``tuned_model_path`` writes the merged
model once into the embedder cache as an ordinary sentence-transformers folder; everything after
(ONNX export, int8, the index's model id) treats it like any other model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from index.errors import IndexingError

ADAPTER_PATH = Path(__file__).with_name("embedder_adapter.safetensors")
# every Linear layer of the encoder: attention query/key/value/output, intermediate and output
TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")


def _targets(model):
    from torch import nn

    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.startswith("encoder.") and name.endswith(TARGETS)]


def add_lora(model, rank: int, alpha: float) -> None:
    """Wrap the encoder's Linear layers in place with trainable low-rank factors (B starts at zero)."""
    import torch
    from torch import nn

    class LoraLinear(nn.Module):
        def __init__(self, base: nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
            nn.init.kaiming_uniform_(self.lora_A, a=5 ** 0.5)
            self.scale = alpha / rank

        def forward(self, x):
            return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale

    for name, module in _targets(model):
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, LoraLinear(module))


def lora_state(model) -> dict:
    """{"<module>.lora_A"/"<module>.lora_B": tensor} of a model wrapped by ``add_lora``."""
    return {name: p.detach().cpu() for name, p in model.named_parameters()
            if name.endswith((".lora_A", ".lora_B"))}


def save_adapter(path: Path, state: dict, info: dict) -> None:
    """fp16 factors plus their rank/alpha/training record as safetensors metadata; written atomically."""
    from safetensors.torch import save_file

    tensors = {name: t.half().contiguous() for name, t in state.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"info": json.dumps(info)})
    os.replace(tmp, path)


def adapter_info(path: Path = ADAPTER_PATH) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return json.loads((handle.metadata() or {}).get("info", "{}"))


def merge(base_weights: dict, adapter: dict, rank: int, alpha: float) -> dict:
    """The base state dict with every adapted Linear's weight replaced by W + alpha/rank · B·A."""
    merged = dict(base_weights)
    modules = sorted({name.rsplit(".", 1)[0] for name in adapter})
    for module in modules:
        key = f"{module}.weight"
        if key not in merged or f"{module}.lora_B" not in adapter:
            raise IndexingError(f"the embedder adapter does not fit the model ({key})",
                                "set [index] code_adapter = false, or model_path to another model")
        a, b = adapter[f"{module}.lora_A"].float(), adapter[f"{module}.lora_B"].float()
        merged[key] = (merged[key].float() + (b @ a) * (alpha / rank)).to(merged[key].dtype)
    return merged


def tuned_model_path(base: Path, cache_dir: Path, adapter_path: Path = ADAPTER_PATH) -> Path:
    """A sentence-transformers folder holding ``base`` with the adapter merged in (made once, cached)."""
    from safetensors.torch import load_file, save_file

    if not adapter_path.is_file():
        raise IndexingError(f"the embedder adapter {adapter_path} is missing",
                            "reinstall the assistant, or set [index] code_adapter = false")
    weights = base / "model.safetensors"
    if not weights.is_file():
        raise IndexingError(f"{base} has no model.safetensors to merge the code adapter into",
                            "set [index] code_adapter = false for this model")
    digest = hashlib.sha256(adapter_path.read_bytes())
    digest.update(f"{weights.stat().st_size}:{base.resolve()}".encode())
    target = cache_dir / f"code-tuned-{digest.hexdigest()[:16]}"
    if (target / "model.safetensors").is_file():
        return target
    info = adapter_info(adapter_path)
    try:
        merged = merge(load_file(str(weights)), load_file(str(adapter_path)), int(info["rank"]), float(info["alpha"]))
    except (KeyError, ValueError, OSError) as exc:
        raise IndexingError(f"the embedder adapter {adapter_path} is damaged ({type(exc).__name__})",
                            "reinstall the assistant, or set [index] code_adapter = false") from exc
    tmp = cache_dir / f".{target.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", ".git*"))
    save_file(merged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "code_adapter.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    try:
        os.replace(tmp, target)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
