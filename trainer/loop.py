"""The one training loop. Every stage runs through ``train``; a stage only brings data and defaults.

Per optimizer step: ``gradient_accumulation_steps`` micro-batches (autocast where enabled),
gradient clipping, a non-finite check that skips and counts the update instead of poisoning the
weights, warmup-then-cosine learning rate, a readable log line, periodic validation, and atomic
``best``/``last`` checkpoints that hold everything needed to resume exactly.

Under ``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel; every
rank draws the same global batch and keeps its slice (see ``trainer.data.dataset``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from common.atomic import atomic_write_text
from common.device import choose_device
from trainer import TrainerError
from trainer.checkpoint import check_flags_against_config, load_checkpoint, save_checkpoint
from trainer.data.dataset import (
    BatchSampler,
    ConversationSampler,
    ReplayMixSampler,
    eval_offsets,
    masked_windows,
    open_mask,
    open_tokens,
    windows,
)
from trainer.data.prepare import read_manifest
from trainer.data.tokenizer import load_tokenizer, tokenizer_from_string
from trainer.models import ModelConfig, build_model, count_parameters, lm_loss, preset_config
from trainer.stages import get_stage


@dataclass
class TrainConfig:
    """Everything ``assistant train`` takes; stored in checkpoints for the record."""

    stage: str = "language"
    architecture: str | None = None  # None: dense, or the checkpoint's
    model_size: str = "tiny"
    data_dir: str = "data/processed"
    tokenizer: str | None = None  # default: the one recorded in the data manifest
    output_dir: str = "models"
    checkpoint: str | None = None  # initialise weights from this (e.g. stage 1 for stage 2)
    resume: str | None = None  # continue this run ("auto": <output>/<prefix>_last.pth)
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    seq_len: int | None = None  # default: min(1024, the model's max_seq_len)
    num_epochs: int = 1
    steps_per_epoch: int | None = None  # default: one pass over the training tokens
    learning_rate: float | None = None  # default: the stage's
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 100
    eval_batches: int = 8
    checkpoint_interval: int | None = None  # default: eval_interval
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"
    use_amp: bool = False
    use_compile: bool = False
    use_gradient_checkpointing: bool = False
    # architecture overrides (None: preset / checkpoint value)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # LoRA: {"rank": r, "alpha": a, "targets": "all-linear"|"q_proj,v_proj"...}; None trains every weight
    lora: dict[str, Any] | None = None
    # conversation stages: share of rows replayed from the language/code data in data_dir (0: none)
    replay_fraction: float = 0.0
    quiet: bool = False

    def prefix(self, architecture: str) -> str:
        return f"{self.stage}_model" if architecture == "dense" else f"{self.stage}_{architecture}_model"


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# bf16 dense peak FLOP/s of known accelerators, for MFU; anything else reports "unknown"
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "RTX 4090": 165e12}


def _setup_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), choose_device(device_name)
    import torch.distributed as dist

    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world)
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, device


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup to ``peak``, then cosine decay to ``min_ratio * peak`` at ``total``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def amp_settings(device: torch.device, requested: bool) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler). bf16 where supported, fp16+scaler on older CUDA."""
    if not requested:
        return None, False
    if device.type == "cuda":
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if device.type == "mps":
        try:
            torch.zeros(1, dtype=torch.bfloat16, device=device)
            return torch.bfloat16, False
        except (RuntimeError, TypeError):
            return torch.float16, False
    # CPU: bf16 autocast pays only with native bf16 matrix units (AMX / AVX512-BF16)
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return (torch.bfloat16, False) if "AMX" in capability.upper() else (None, False)


def apply_update(model, optimizer, scaler, grad_clip: float) -> tuple[float, bool]:
    """Clip and step, unless the gradient is not finite: then skip, zero the grads, report it."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    finite = bool(torch.isfinite(norm))
    if scaler is not None:
        scaler.step(optimizer)  # skips by itself on inf/nan
        scaler.update()
    elif finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm), not finite


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _rng_state() -> dict:
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "key": key.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Devices with a fused AdamW kernel: one kernel per parameter instead of a dozen small ops
# (on CPU 4-7x faster than the per-tensor loop torch picks by default there; docs/PERFORMANCE.md).
FUSED_ADAMW_DEVICES = ("cuda", "cpu", "mps")


def make_optimizer(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable ``params``, weight decay on matrices only; fused where the device
    has the kernel."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if device.type in FUSED_ADAMW_DEVICES:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
        except RuntimeError:  # an older torch without the kernel for this device or dtype
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


def _resolve_model_config(cfg: TrainConfig, init: dict | None, vocab_size: int) -> ModelConfig:
    overrides = {k: v for k, v in cfg.model_overrides.items() if v is not None}
    if init is not None:
        config: ModelConfig = init["config"]
        requested = dict(overrides)
        if cfg.architecture:
            requested["architecture"] = cfg.architecture
        window = requested.pop("max_seq_len", None)
        check_flags_against_config(config, requested, cfg.checkpoint or cfg.resume or "")
        if window and window != config.max_seq_len:
            if config.position != "rope" and config.architecture in ("dense", "moe"):
                raise TrainerError(f"--max-seq-len cannot change a model with learned positions ({config.max_seq_len})",
                                   "drop --max-seq-len")
            config = dataclasses.replace(config, max_seq_len=window)  # RoPE/Mamba: no weights depend on it
        return config
    architecture = cfg.architecture or "dense"
    overrides.setdefault("vocab_size", vocab_size)
    try:
        return preset_config(cfg.model_size, architecture, **overrides)
    except ValueError as exc:
        raise TrainerError(str(exc), "see 'assistant train --help' for the choices") from exc


class Trainer:
    """One training run; ``run()`` returns a summary dict. Use ``train(cfg)``."""

    def __init__(self, cfg: TrainConfig, on_log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.stage = get_stage(cfg.stage)
        self.dist, self.device = _setup_distributed(cfg.device)
        self.on_log = on_log or (lambda line: None)
        self.history: list[dict] = []
        self.evals: list[dict] = []
        self.skipped = 0
        self.best_val = float("inf")
        self.start_step = 0

    # ---- set-up -------------------------------------------------------------------------
    def _log(self, line: str) -> None:
        if self.dist.is_main:
            self.on_log(line)

    def _load_data_and_tokenizer(self, init: dict | None):
        cfg = self.cfg
        manifest = read_manifest(cfg.data_dir, self.stage.data)
        if cfg.tokenizer:
            tokenizer = load_tokenizer(cfg.tokenizer)
        elif init is not None and init.get("tokenizer_json"):
            tokenizer = tokenizer_from_string(init["tokenizer_json"])
        elif manifest.get("tokenizer_path"):
            tokenizer = load_tokenizer(manifest["tokenizer_path"])
        else:
            raise TrainerError("no tokenizer for this data", "pass --tokenizer PATH")
        if manifest.get("tokenizer_hash") != tokenizer.hash:
            raise TrainerError(
                f"the {self.stage.data} data in {cfg.data_dir} was prepared with another tokenizer",
                "prepare the data again with this tokenizer, or pass the matching --tokenizer",
            )
        if init is not None and init.get("tokenizer_hash") not in (None, tokenizer.hash):
            raise TrainerError(
                "the checkpoint was trained with another tokenizer than this data's",
                "prepare the data with the checkpoint's tokenizer (it is stored in the checkpoint)",
            )
        train_path = Path(cfg.data_dir) / f"{self.stage.data}_train.npy"
        val_path = Path(cfg.data_dir) / f"{self.stage.data}_val.npy"
        train = open_tokens(train_path, tokenizer.vocab_size)
        val = open_tokens(val_path, tokenizer.vocab_size)
        if train.size == 0:
            raise TrainerError(f"the {self.stage.data} training data is empty", "prepare a larger corpus")
        self.chat = manifest.get("chat") or (init or {}).get("chat")
        if self.stage.masked:
            self.train_mask, self.train_starts = open_mask(train_path, train)
            self.val_mask, self.val_starts = open_mask(val_path, val)
        return tokenizer, train, val

    def _resume_path(self, architecture: str) -> Path | None:
        if not self.cfg.resume:
            return None
        if self.cfg.resume == "auto":
            return Path(self.cfg.output_dir) / f"{self.cfg.prefix(architecture)}_last.pth"
        return Path(self.cfg.resume)

    def setup(self) -> None:
        cfg = self.cfg
        resume_path = self._resume_path(cfg.architecture or "dense")
        if resume_path is not None and not resume_path.exists() and cfg.resume == "auto":
            # --resume with nothing to resume: look for another architecture's run only if named
            raise TrainerError(f"nothing to resume: {resume_path} does not exist", "start the run without --resume")
        resume = load_checkpoint(resume_path, expect_architecture=cfg.architecture) if resume_path else None
        init = resume or (load_checkpoint(cfg.checkpoint, expect_architecture=cfg.architecture) if cfg.checkpoint else None)
        if init is not None and init.get("quantization"):
            from trainer.quantize import dequantized_payload

            # e.g. fine-tuning the shipped int8 model: its weights come back as codes x scales, in float32
            mode = init["quantization"]["mode"]
            init = dequantized_payload(init)
            self._dequantized_note = f"training from {cfg.checkpoint}: its {mode} weights dequantized to float32"
        if resume is not None and resume.get("kind") != "resumable":
            raise TrainerError(f"{resume_path} holds no optimizer state to resume from", "use the *_last.pth checkpoint")
        self.tokenizer, self.train_tokens, self.val_tokens = self._load_data_and_tokenizer(init)
        self.model_config = _resolve_model_config(cfg, init, self.tokenizer.vocab_size)
        if self.model_config.vocab_size != self.tokenizer.vocab_size:
            raise TrainerError(
                f"the model's vocabulary ({self.model_config.vocab_size}) does not match the tokenizer's ({self.tokenizer.vocab_size})",
                "use the tokenizer the checkpoint was trained with",
            )
        self.seq_len = cfg.seq_len or min(1024, self.model_config.max_seq_len)
        if self.seq_len > self.model_config.max_seq_len:
            raise TrainerError(
                f"--seq-len {self.seq_len} exceeds the model's maximum of {self.model_config.max_seq_len}",
                f"use --seq-len {self.model_config.max_seq_len} or less",
            )
        if cfg.batch_size < 1 or cfg.gradient_accumulation_steps < 1:
            raise TrainerError("--batch-size and --gradient-accumulation-steps must be at least 1")

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        model = build_model(self.model_config)
        if init is not None:
            model.load_state_dict(init["model"])
        model.gradient_checkpointing = cfg.use_gradient_checkpointing
        if cfg.lora:
            from trainer.lora import LoRAConfig, apply_lora

            names = apply_lora(model, LoRAConfig(**cfg.lora))
            if resume is not None and resume.get("lora_state"):
                missing, unexpected = model.load_state_dict(resume["lora_state"], strict=False)
                if unexpected:
                    raise TrainerError(f"{resume_path} holds another adapter than --lora-targets asks for",
                                       "resume with the LoRA flags of the interrupted run")
            self._log_lora = f"LoRA rank {cfg.lora['rank']} on {len(names)} Linear layers (base frozen)"
        self.raw_model = model.to(self.device)
        self.total_params, self.active_params = count_parameters(self.raw_model)

        self.global_micro_batch = cfg.batch_size * self.dist.world_size
        if self.stage.masked:
            self.sampler = ConversationSampler(self.train_tokens, self.train_mask, self.train_starts, self.seq_len,
                                               self.global_micro_batch, cfg.seed, self.dist.rank, self.dist.world_size,
                                               pad_id=self.tokenizer.eos_id)
            if cfg.replay_fraction > 0:
                self.sampler = self._with_replay(self.sampler)
        else:
            self.sampler = BatchSampler(self.train_tokens, self.seq_len, self.global_micro_batch, cfg.seed,
                                        self.dist.rank, self.dist.world_size)
        tokens_per_step = self.global_micro_batch * cfg.gradient_accumulation_steps * self.seq_len
        self.steps_per_epoch = cfg.steps_per_epoch or max(1, self.train_tokens.size // tokens_per_step)
        self.total_steps = cfg.num_epochs * self.steps_per_epoch
        self.tokens_per_step = tokens_per_step
        self.peak_lr = cfg.learning_rate if cfg.learning_rate is not None else self.stage.learning_rate
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(self.stage.warmup_steps, self.total_steps // 10)
        self.optimizer = make_optimizer(self.raw_model.parameters(), self.peak_lr, cfg.weight_decay, self.device)
        self.autocast_dtype, use_scaler = amp_settings(self.device, cfg.use_amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if use_scaler else None

        if resume is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            if self.scaler is not None and resume.get("scaler"):
                self.scaler.load_state_dict(resume["scaler"])
            self.sampler.load_state_dict(resume["sampler"])
            _set_rng_state(resume["rng"])
            self.start_step = int(resume["step"])
            self.history = list(resume.get("history", []))
            self.evals = list(resume.get("evals", []))
            self.skipped = int(resume.get("skipped", 0))
            self.best_val = float(resume.get("best_val", float("inf")))

        self.model = self.raw_model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.raw_model, device_ids=ids)
        if cfg.use_compile:
            self.model = torch.compile(self.model)
        self.out_dir = Path(cfg.output_dir)
        self.prefix = cfg.prefix(self.model_config.architecture)
        self.checkpoint_interval = cfg.checkpoint_interval or cfg.eval_interval

    # ---- pieces ------------------------------------------------------------------------
    def _with_replay(self, conversations: ConversationSampler) -> ReplayMixSampler:
        from trainer.data.dataset import replay_tokens

        arrays, sources = replay_tokens(self.cfg.data_dir, self.tokenizer.hash)
        if not arrays:
            raise TrainerError(f"--replay-fraction needs the language or code data in {self.cfg.data_dir}",
                               "prepare them there with this tokenizer, or pass --replay-fraction 0")
        self.replay_sources = sources
        return ReplayMixSampler(conversations, arrays, self.cfg.replay_fraction, self.cfg.seed, self.dist.rank)

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def _evaluate_masked(self) -> dict:
        """Mean loss over the assistant tokens of the first validation conversations."""
        starts = self.val_starts[: self.cfg.eval_batches * self.cfg.batch_size]
        self.raw_model.eval()
        total, count = 0.0, 0.0
        for first in range(0, len(starts), self.cfg.batch_size):
            x, y, m = masked_windows(self.val_tokens, self.val_mask, starts[first : first + self.cfg.batch_size],
                                     self.seq_len, self.tokenizer.eos_id)
            x, y, m = x.to(self.device), y.to(self.device), m.to(self.device)
            with self._autocast():
                logits, _ = self.raw_model(x)
            weight = float(m.sum())
            total += float(lm_loss(logits, y, m)) * weight
            count += weight
        self.raw_model.train()
        if count == 0:
            return {}
        loss = total / count
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}

    @torch.no_grad()
    def evaluate(self) -> dict:
        if self.stage.masked:
            return self._evaluate_masked()
        seq = min(self.seq_len, self.val_tokens.size - 2)
        if seq < 1:
            return {}
        offsets = eval_offsets(self.val_tokens.size, seq, self.cfg.eval_batches * self.cfg.batch_size)
        self.raw_model.eval()
        total, count = 0.0, 0
        for start in range(0, len(offsets), self.cfg.batch_size):
            x, y = windows(self.val_tokens, offsets[start : start + self.cfg.batch_size], seq)
            x, y = x.to(self.device), y.to(self.device)
            with self._autocast():
                logits, _ = self.raw_model(x)
            total += float(lm_loss(logits, y)) * x.size(0)
            count += x.size(0)
        self.raw_model.train()
        loss = total / max(1, count)
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}

    def _micro_step(self, micro: int) -> tuple[float, dict]:
        batch = self.sampler.next_batch()
        x, y = batch[0].to(self.device, non_blocking=True), batch[1].to(self.device, non_blocking=True)
        loss_mask = batch[2].to(self.device, non_blocking=True) if len(batch) > 2 else None
        last = micro == self.cfg.gradient_accumulation_steps - 1
        sync = last or self.dist.world_size == 1
        context = self.model.no_sync() if (not sync and hasattr(self.model, "no_sync")) else contextlib.nullcontext()
        with context:
            with self._autocast():
                logits, aux = self.model(x)
                loss = lm_loss(logits, y, loss_mask)
                total = loss + aux["aux_loss"] if aux else loss
            scaled = total / self.cfg.gradient_accumulation_steps
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        return float(loss.detach()), aux

    def _save(self, name: str, step: int, resumable: bool) -> Path:
        from trainer.checkpoint import weights_digest
        from trainer.lora import has_lora, lora_state_dict, save_adapter

        state = self.raw_model.state_dict()
        lora_extra: dict[str, Any] = {}
        if has_lora(self.raw_model):
            # the base weights stay a plain checkpoint; the adapter is written beside it, on its own
            state = {k: v for k, v in state.items() if not k.endswith((".lora_A", ".lora_B"))}
            adapter = save_adapter(self.out_dir / f"{self.prefix}_{name}_adapter.pt", self.raw_model,
                                   weights_digest(state), stage=self.cfg.stage, step=step)
            lora_extra["adapter"] = str(adapter)
            if resumable:
                lora_extra["lora_state"] = lora_state_dict(self.raw_model)
        extra: dict[str, Any] = {
            "kind": "resumable" if resumable else "weights",
            "stage": self.cfg.stage,
            "step": step,
            "train_config": asdict(self.cfg),
            "best_val": self.best_val,
            "evals": self.evals,
            "parameters": {"total": self.total_params, "active": self.active_params},
        }
        if self.chat:
            extra["chat"] = self.chat  # how conversations were rendered (e.g. the compact tool list)
        if resumable:
            extra.update(
                optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                sampler=self.sampler.state_dict(),
                rng=_rng_state(),
                history=self.history,
                skipped=self.skipped,
            )
        extra.update(lora_extra)
        return save_checkpoint(
            self.out_dir / f"{self.prefix}_{name}.pth",
            model_state=state,
            model_config=self.model_config,
            tokenizer_json=self.tokenizer.to_str(),
            tokenizer_hash=self.tokenizer.hash,
            **extra,
        )

    def _write_history(self) -> None:
        document = {
            "stage": self.cfg.stage,
            "architecture": self.model_config.architecture,
            "model_config": self.model_config.to_dict(),
            "parameters": {"total": self.total_params, "active": self.active_params},
            "steps": self.history,
            "evals": self.evals,
            "skipped_updates": self.skipped,
            "best_val_loss": self.best_val if self.best_val < float("inf") else None,
        }
        atomic_write_text(self.out_dir / f"{self.prefix}_history.json", json.dumps(document, indent=1))

    def _mfu(self, tokens_per_s: float) -> str:
        if self.device.type != "cuda":
            return "mfu unknown"
        name = torch.cuda.get_device_name(self.device)
        peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
        if peak is None:
            return "mfu unknown"
        c = self.model_config
        attn_layers = sum(c.is_attention_layer(i) for i in range(c.n_layers))
        flops_per_token = 6 * self.active_params + 12 * attn_layers * c.d_model * self.seq_len
        return f"mfu {100 * flops_per_token * tokens_per_s / (peak * self.dist.world_size):.0f}%"

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> dict:
        self.setup()
        cfg = self.cfg
        c = self.model_config
        self._log(
            f"stage {cfg.stage} | {c.architecture} {cfg.model_size if not cfg.checkpoint else 'from checkpoint'} | "
            f"{self.total_params / 1e6:.2f}M params ({self.active_params / 1e6:.2f}M active) | device {self.device} | "
            f"amp {self.autocast_dtype or 'off'} | {self.total_steps} steps x {self.tokens_per_step} tokens"
            + (f" | world {self.dist.world_size}" if self.dist.world_size > 1 else "")
        )
        if getattr(self, "_log_lora", None):
            self._log(self._log_lora)
        if getattr(self, "replay_sources", None):
            self._log(f"replay {cfg.replay_fraction:.0%} of rows from {', '.join(Path(s).name for s in self.replay_sources)}")
        if getattr(self, "_dequantized_note", None):
            self._log(self._dequantized_note)
        if self.start_step >= self.total_steps:
            self._log(f"nothing to do: the run already finished at step {self.start_step}")
            return self.summary()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        progress = None
        if self.dist.is_main and not cfg.quiet:
            from tqdm import tqdm

            progress = tqdm(total=self.total_steps, initial=self.start_step, unit="step", dynamic_ncols=True,
                            disable=None, leave=False)
        self.raw_model.train()
        if self.start_step == 0 and self.dist.is_main:
            initial = self.evaluate()
            if initial:
                self.evals.append({"step": 0, **initial})
                self._log(f"step 0 | val loss {initial['val_loss']:.4f} | ppl {initial['val_ppl']:.1f}")
        try:
            for step in range(self.start_step, self.total_steps):
                lr = lr_at(step, self.total_steps, self.peak_lr, self.warmup, cfg.min_lr_ratio)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                started = time.perf_counter()
                losses, shares = [], []
                try:
                    for micro in range(cfg.gradient_accumulation_steps):
                        loss, aux = self._micro_step(micro)
                        losses.append(loss)
                        if aux:
                            shares.append(aux["expert_share"].float().mean(0))
                    grad_norm, skipped = apply_update(self.model, self.optimizer, self.scaler, cfg.grad_clip)
                except Exception as exc:
                    if _is_oom(exc):
                        raise TrainerError(
                            f"out of memory at --batch-size {cfg.batch_size} with --seq-len {self.seq_len}",
                            f"try --batch-size {max(1, cfg.batch_size // 2)} --gradient-accumulation-steps "
                            f"{cfg.gradient_accumulation_steps * 2}, or --use-gradient-checkpointing",
                        ) from exc
                    raise
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                elapsed = time.perf_counter() - started
                loss = self._global_mean(float(np.mean(losses)))
                if not math.isfinite(loss):
                    skipped = True
                self.skipped += int(skipped)
                tokens_per_s = self.tokens_per_step / elapsed
                record = {
                    "step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm, "ms": elapsed * 1000,
                    "tokens_per_s": tokens_per_s, "skipped": self.skipped, "peak_memory_mb": self._peak_memory_mb(),
                }
                if shares:
                    record["expert_share"] = [round(float(v), 4) for v in torch.stack(shares).mean(0)]
                self.history.append(record)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:.0f}")
                if (step + 1) % cfg.log_interval == 0 or step + 1 == self.total_steps:
                    self._log(self._log_line(record))
                done = step + 1 == self.total_steps
                if (step + 1) % cfg.eval_interval == 0 or done:
                    self._evaluate_and_keep_best(step + 1)
                if (step + 1) % self.checkpoint_interval == 0 or done:
                    if self.dist.is_main:
                        self._save("last", step + 1, resumable=True)
                        self._write_history()
        finally:
            if progress is not None:
                progress.close()
        return self.summary()

    def _evaluate_and_keep_best(self, step: int) -> None:
        if not self.dist.is_main:
            return
        result = self.evaluate()
        if not result:
            return
        self.evals.append({"step": step, **result})
        improved = result["val_loss"] < self.best_val
        if improved:
            self.best_val = result["val_loss"]
            self._save("best", step, resumable=False)
        self._log(f"step {step} | val loss {result['val_loss']:.4f} | ppl {result['val_ppl']:.1f}" + (" | best" if improved else ""))

    def _global_mean(self, value: float) -> float:
        """The step's loss averaged over all ranks, so logs equal a single-process run's."""
        if self.dist.world_size == 1:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.dist.world_size

    def _peak_memory_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.device.type == "mps":
            return torch.mps.driver_allocated_memory() / 2**20
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        except (ImportError, OSError):
            return None

    def _log_line(self, r: dict) -> str:
        tok = r["tokens_per_s"]
        tok_text = f"{tok / 1000:.1f}k tok/s" if tok >= 1000 else f"{tok:.0f} tok/s"
        line = (f"step {r['step']} | loss {r['loss']:.4f} | lr {r['lr']:.1e} | grad {r['grad_norm']:.2f} | "
                f"{r['ms']:.0f} ms | {tok_text} | {self._mfu(tok)}")
        if self.skipped:
            line += f" | skipped {self.skipped}"
        if "expert_share" in r:
            line += " | experts " + "/".join(f"{100 * s:.0f}" for s in r["expert_share"]) + "%"
        return line

    def summary(self) -> dict:
        return {
            "stage": self.cfg.stage,
            "architecture": self.model_config.architecture,
            "steps": len(self.history),
            "final_step": self.history[-1]["step"] if self.history else self.start_step,
            "initial_val_loss": self.evals[0]["val_loss"] if self.evals else None,
            "best_val_loss": self.best_val if self.best_val < float("inf") else None,
            "skipped_updates": self.skipped,
            "best_checkpoint": str(self.out_dir / f"{self.prefix}_best.pth"),
            "last_checkpoint": str(self.out_dir / f"{self.prefix}_last.pth"),
            "history": str(self.out_dir / f"{self.prefix}_history.json"),
            "best_adapter": str(self.out_dir / f"{self.prefix}_best_adapter.pt") if self.cfg.lora else None,
            "parameters": {"total": self.total_params, "active": self.active_params},
        }


def train(cfg: TrainConfig, on_log: Callable[[str], None] | None = None) -> dict:
    """Run one training job (any stage) and return its summary."""
    trainer = Trainer(cfg, on_log)
    try:
        return trainer.run()
    finally:
        if trainer.dist.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
