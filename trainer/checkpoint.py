"""The checkpoint format: one ``.pth`` file (a torch zip) holding everything a run needs.

Contents: format tag and version, the model config, the tokenizer (its JSON and hash), the
weights and their SHA-256, and for resumable checkpoints the optimizer, scheduler, grad scaler,
RNG states, sampler position, step and history. Files are written atomically (temp, fsync,
rename); loading verifies the format, the weight checksum, and the architecture if asked.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import torch

from common.atomic import atomic_writer
from trainer import TrainerError
from trainer.models.config import ARCHITECTURE_FIELDS, ModelConfig

FORMAT = "assistant-checkpoint"
VERSION = 1


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor, in key order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, *, model_state: dict, model_config: ModelConfig, tokenizer_json: str | None,
                    tokenizer_hash: str | None, **extra: Any) -> Path:
    """Write a checkpoint atomically. ``extra`` holds optimizer/scheduler/rng/step/... entries."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.time(),
        "torch_version": str(torch.__version__),
        "model_config": model_config.to_dict(),
        "tokenizer_json": tokenizer_json,
        "tokenizer_hash": tokenizer_hash,
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "weights_sha256": weights_digest(model_state),
        **extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_writer(path, "wb") as handle:
        handle.write(buffer.getbuffer())
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True,
                    expect_architecture: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; every failure is one TrainerError line."""
    path = Path(path)
    if not path.exists():
        raise TrainerError(f"checkpoint not found: {path}", "check the path given to --checkpoint")
    if path.is_dir():
        raise TrainerError(f"checkpoint path is a directory: {path}", "point at a .pth file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, garbage bytes, pickle errors
        raise TrainerError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__})",
            "use another checkpoint (e.g. the *_best.pth beside it) or retrain",
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TrainerError(f"{path} is not an assistant checkpoint", "Hugging Face models go through 'assistant model import'")
    if payload.get("version", 0) > VERSION:
        raise TrainerError(f"checkpoint {path} has format version {payload['version']}", "upgrade the assistant to read it")
    if verify and payload.get("weights_sha256") and weights_digest(payload["model"]) != payload["weights_sha256"]:
        raise TrainerError(f"checkpoint {path} failed its checksum (the weights are damaged)", "use another checkpoint or retrain")
    config = ModelConfig.from_dict(payload["model_config"])
    if expect_architecture and config.architecture != expect_architecture:
        raise TrainerError(
            f"checkpoint {path} is a {config.architecture} model, not {expect_architecture}",
            f"drop --architecture or pass --architecture {config.architecture}",
        )
    payload["config"] = config
    return payload


def check_flags_against_config(config: ModelConfig, requested: dict[str, Any], source: str) -> None:
    """Refuse architecture flags that contradict a checkpoint (e.g. --use-rope on learned positions)."""
    for name, value in requested.items():
        if value is None or name not in ARCHITECTURE_FIELDS:
            continue
        have = getattr(config, name)
        if have != value:
            flag = {"norm": "--use-rmsnorm", "position": "--use-rope", "mlp": "--use-swiglu"}.get(name, "--" + name.replace("_", "-"))
            raise TrainerError(
                f"{flag} asks for {name}={value} but checkpoint {source} has {name}={have}",
                "architecture flags cannot change a trained model; drop the flag",
            )


def model_from_payload(payload: dict[str, Any]):
    """The model of a loaded checkpoint, float or quantized, in eval mode on the CPU.

    Built on the meta device and filled by assigning the stored tensors, so loading costs no
    random initialisation and no second copy of the weights. A quantized checkpoint (a
    ``quantization`` entry, written by ``trainer.quantize``) gets its quantized layers back.
    """
    from torch import nn

    from trainer.models import build_model
    from trainer.quantize import install_shells

    config: ModelConfig = payload["config"]
    with torch.device("meta"):
        model = build_model(config)
        if payload.get("quantization"):
            install_shells(model, payload["quantization"])
    try:
        model.load_state_dict(payload["model"], strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise TrainerError(
            f"the weights in the checkpoint do not fit its model config ({first[1].strip() if len(first) > 1 else first[0]})",
            "the file was written by another version or edited; use another checkpoint",
        ) from exc
    if config.tie_embeddings and isinstance(model.lm_head, nn.Linear) and isinstance(model.embed, nn.Embedding):
        model.lm_head.weight = model.embed.weight
    return model.eval()


def load_model(path: str | Path, verify: bool = True):
    """(model, tokenizer, payload) of a checkpoint for inference; the runtime's entry point.

    The payload keeps the metadata (config, quantization, source...) but not the weights."""
    from trainer.data.tokenizer import tokenizer_from_string

    payload = load_checkpoint(path, verify=verify)
    if not payload.get("tokenizer_json"):
        raise TrainerError(f"checkpoint {path} holds no tokenizer", "train or import it with this version of the assistant")
    tokenizer = tokenizer_from_string(payload["tokenizer_json"])
    stop_tokens = (payload.get("chat") or {}).get("stop_tokens") or []
    tokenizer.extra_stop_ids = [i for i in (tokenizer.token_to_id(t) for t in stop_tokens) if i is not None]
    tokenizer.tools_style = (payload.get("chat") or {}).get("tools_style", "full")  # how its tool list was trained
    model = model_from_payload(payload)
    del payload["model"]  # the weights live in the model now; a dtype change can then free them
    return model, tokenizer, payload
