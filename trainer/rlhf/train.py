"""Stage 4: reward model, DPO, KTO, PPO and GRPO on top of a trained checkpoint.

Every method shares the set-up (checkpoint, tokenizer, optional LoRA adapter, the frozen
reference), the optimizer, the warmup-then-cosine schedule and the non-finite-update guard of
``trainer.loop``; only the batch and the loss differ. Offline methods (DPO, KTO) compute the
reference log-probs once, before the first step, and reuse them (the reference never changes);
online methods (PPO, GRPO) score their fresh samples under the reference as they go (with LoRA,
the reference is the same network with its adapter switched off, so no second copy is held).

Outputs in ``output_dir``: ``<name>_model_best.pth`` (the merged model, loadable by everything),
``<name>_adapter.pt`` when training with LoRA, and ``<name>_history.json`` with the log.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.atomic import atomic_write_text
from common.device import choose_device
from trainer import TrainerError
from trainer.loop import apply_update, lr_at, make_optimizer
from trainer.lora import LoRAConfig, apply_lora, has_lora, lora_parameters, merge_lora, save_adapter
from trainer.rlhf import data as pdata
from trainer.rlhf.logprobs import batched_sequence_logprobs, pad_batch, token_logprobs
from trainer.rlhf.losses import (
    bradley_terry_loss,
    clipped_policy_loss,
    clipped_value_loss,
    dpo_loss,
    gae,
    group_advantages,
    k3_kl,
    kto_loss,
    kto_reference_point,
    kto_weights,
    masked_mean,
    masked_whiten,
)

METHODS = ("dpo", "kto", "ppo", "grpo")
DEFAULT_LR = {"reward": 1e-4, "dpo": 5e-5, "kto": 5e-5, "ppo": 1e-5, "grpo": 1e-5}
DEFAULT_LR_LORA = {"reward": 5e-4, "dpo": 5e-4, "kto": 5e-4, "ppo": 2e-4, "grpo": 2e-4}


@dataclass
class PreferenceConfig:
    """Everything ``assistant train --stage reward|rlhf`` takes."""

    method: str = "dpo"  # reward | dpo | kto | ppo | grpo
    checkpoint: str = ""
    data_dir: str = "data/processed"
    output_dir: str = "models"
    name: str | None = None  # output prefix (default: reward / rlhf)
    reward_model: str | None = None  # PPO
    steps: int = 100
    batch_size: int = 8
    learning_rate: float | None = None
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    beta: float = 0.1
    sft_weight: float = 0.0  # DPO/KTO: + this x the per-token NLL of the preferred answers (RPO), against collapse
    use_margin: bool = False  # reward: subtract each pair's margin (Llama 2)
    max_len: int = 256
    lora: LoRAConfig | None = None
    seed: int = 1337
    device: str = "auto"
    eval_interval: int = 50
    log_interval: int = 10
    # online methods
    group_size: int = 4  # GRPO completions per prompt; PPO samples per prompt
    max_new_tokens: int = 64
    temperature: float = 1.0
    ppo_epochs: int = 2
    clip: float = 0.2
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    sandbox: Any = None  # SandboxSettings for GRPO's verifiable rewards
    # continual learning: extra data instead of the prepared files
    pairs: list | None = None
    labelled: list | None = None
    replay_tokens: Any = None  # earlier stages' tokens (an array, or a list: one per stage) mixed into each step
    replay_fraction: float = 0.0
    quiet: bool = False
    extra: dict = field(default_factory=dict)

    def output_name(self) -> str:
        return self.name or ("reward" if self.method == "reward" else "rlhf")


class _Run:
    """Shared set-up of one preference run."""

    def __init__(self, cfg: PreferenceConfig, on_log: Callable[[str], None] | None) -> None:
        from trainer.checkpoint import load_checkpoint, model_from_payload
        from trainer.data.tokenizer import tokenizer_from_string

        self.cfg = cfg
        self.log = on_log or (lambda line: None)
        if not cfg.checkpoint:
            raise TrainerError("this stage starts from a trained model", "pass --checkpoint models/<stage>_model_best.pth")
        payload = load_checkpoint(cfg.checkpoint)
        if payload.get("quantization"):
            raise TrainerError(f"{cfg.checkpoint} is quantized", "train from the float checkpoint it was made from")
        if not payload.get("tokenizer_json"):
            raise TrainerError(f"checkpoint {cfg.checkpoint} holds no tokenizer", "use a checkpoint made by 'assistant train'")
        self.payload = payload
        self.base_sha = payload.get("weights_sha256")
        self.tokenizer = tokenizer_from_string(payload["tokenizer_json"])
        self.device = choose_device(cfg.device)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        model = model_from_payload(payload).to(self.device).float()
        payload.pop("model", None)  # the weights live in the model now
        for p in model.parameters():
            p.requires_grad_(True)
        self.model = model.train()
        self.max_len = min(cfg.max_len, model.config.max_seq_len)
        self.history: list[dict] = []
        self.evals: list[dict] = []
        self.skipped = 0

    def reference_copy(self):
        ref = copy.deepcopy(self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    def attach_lora(self) -> None:
        if self.cfg.lora is not None:
            names = apply_lora(self.model, self.cfg.lora)
            self.log(f"LoRA rank {self.cfg.lora.rank} alpha {self.cfg.lora.alpha:g} on {len(names)} Linear layers")

    def trainable(self, extra: list | None = None) -> list[torch.nn.Parameter]:
        params = lora_parameters(self.model) if has_lora(self.model) else [p for p in self.model.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params + list(extra or [])

    def optimizer(self, params) -> torch.optim.Optimizer:
        cfg = self.cfg
        lr = cfg.learning_rate or (DEFAULT_LR_LORA if cfg.lora else DEFAULT_LR)[cfg.method]
        self.peak_lr = lr
        self.warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, cfg.steps // 10)
        return make_optimizer(params, lr, cfg.weight_decay, self.device)

    def set_lr(self, optimizer, step: int) -> float:
        lr = lr_at(step, self.cfg.steps, self.peak_lr, self.warmup, self.cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, optimizer, loss: torch.Tensor, params) -> tuple[float, bool]:
        loss.backward()
        holder = _ParamHolder(params)
        norm, skipped = apply_update(holder, optimizer, None, self.cfg.grad_clip)
        self.skipped += int(skipped)
        return norm, skipped

    def replay_loss(self) -> torch.Tensor | None:
        """Next-token loss on random windows of earlier stages' data (continual learning's replay):
        about ``replay_fraction`` of the sequences each step sees come from there."""
        cfg = self.cfg
        if cfg.replay_tokens is None or cfg.replay_fraction <= 0:
            return None
        from trainer.models import lm_loss

        tokens = cfg.replay_tokens
        if isinstance(tokens, (list, tuple)):  # several earlier stages: one of them per step
            tokens = tokens[random.randrange(len(tokens))]
        seq = min(self.max_len, int(tokens.size) - 2, 128)
        if seq < 8:
            return None
        frac = min(cfg.replay_fraction, 0.9)
        count = max(1, round(cfg.batch_size * frac / (1 - frac)))
        starts = np.random.randint(0, tokens.size - seq - 1, size=count)
        x = torch.stack([torch.from_numpy(np.asarray(tokens[s : s + seq], dtype=np.int64)) for s in starts]).to(self.device)
        y = torch.stack([torch.from_numpy(np.asarray(tokens[s + 1 : s + seq + 1], dtype=np.int64)) for s in starts]).to(self.device)
        logits, _ = self.model(x)
        return lm_loss(logits, y)

    def record(self, step: int, lr: float, loss: float, grad: float, started: float, **metrics: float) -> None:
        rec = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad, "ms": (time.perf_counter() - started) * 1000,
               "skipped": self.skipped, **metrics}
        self.history.append(rec)
        if step % self.cfg.log_interval == 0 or step == self.cfg.steps:
            extra = " | ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            self.log(f"step {step} | loss {loss:.4f} | lr {lr:.1e} | grad {grad:.2f} | {rec['ms']:.0f} ms"
                     + (f" | {extra}" if extra else ""))

    def save_policy(self, summary: dict) -> dict:
        from trainer.checkpoint import save_checkpoint

        cfg = self.cfg
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = cfg.output_name()
        if has_lora(self.model):
            summary["adapter"] = str(save_adapter(out / f"{name}_adapter.pt", self.model, self.base_sha,
                                                  method=cfg.method, steps=cfg.steps, base_checkpoint=str(cfg.checkpoint)))
            merge_lora(self.model)
        keep = {k: v for k, v in self.payload.items() if k in ("chat", "source", "parameters")}
        path = save_checkpoint(out / f"{name}_model_best.pth", model_state=self.model.state_dict(),
                               model_config=self.model.config, tokenizer_json=self.payload["tokenizer_json"],
                               tokenizer_hash=self.payload.get("tokenizer_hash"), kind="weights", stage=f"rlhf-{cfg.method}",
                               step=cfg.steps, parent_weights_sha256=self.base_sha, rlhf=_jsonable(summary), **keep)
        summary["checkpoint"] = str(path)
        self.write_history(summary)
        return summary

    def write_history(self, summary: dict) -> None:
        out = Path(self.cfg.output_dir)
        doc = {"method": self.cfg.method, "config": _jsonable(asdict(self.cfg)), "steps": self.history, "evals": self.evals,
               "summary": _jsonable(summary)}
        atomic_write_text(out / f"{self.cfg.output_name()}_history.json", json.dumps(doc, indent=1))


class _ParamHolder:
    """What ``apply_update`` needs from a model: its parameters (here: only the trained ones)."""

    def __init__(self, params) -> None:
        self._params = params

    def parameters(self):
        return iter(self._params)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k not in ("replay_tokens", "pairs", "labelled", "sandbox")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@contextlib.contextmanager
def adapter_off(model):
    """The base model's forward for the duration (LoRA scaling set to 0): the frozen reference."""
    modules = [m for m in model.modules() if hasattr(m, "_lora_handle")]
    scales = [m.lora_scaling for m in modules]
    for m in modules:
        m.lora_scaling = 0.0
    try:
        yield model
    finally:
        for m, s in zip(modules, scales):
            m.lora_scaling = s


def _encode_all(run: _Run, prompts, replies) -> tuple[list, list]:
    ids, masks = [], []
    for prompt, reply in zip(prompts, replies):
        enc = pdata.encode(prompt, reply, run.tokenizer, run.max_len)
        ids.append(enc.ids)
        masks.append(enc.mask)
    return ids, masks


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Index batches for ``steps`` steps, reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            order = rng.permutation(n)
            pos = 0
        take = order[pos : pos + min(batch_size, n)]
        pos += len(take)
        yield [int(i) for i in take]


# ---- reward model -------------------------------------------------------------------------------


def _pairs(cfg: PreferenceConfig, part: str) -> list[dict]:
    if part == "train" and cfg.pairs is not None:
        return [p for p in cfg.pairs if pdata.is_pair(p)]
    return [p for p in pdata.load_split(cfg.data_dir, pdata.PAIRS, part) if pdata.is_pair(p)]


def train_reward(cfg: PreferenceConfig, on_log=None) -> dict:
    from trainer.checkpoint import save_checkpoint
    from trainer.rlhf.reward import RewardModel

    run = _Run(cfg, on_log)
    train_pairs, val_pairs = _pairs(cfg, "train"), _pairs(cfg, "val")
    if not train_pairs:
        raise TrainerError("no preference pairs to train on", "run 'assistant data prepare --stage rlhf' first")
    run.attach_lora()
    reward = RewardModel(run.model).to(run.device)
    params = run.trainable(list(reward.head.parameters()))
    optimizer = run.optimizer(params)

    def encode_pairs(pairs):
        c_ids, c_mask = _encode_all(run, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
        r_ids, r_mask = _encode_all(run, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
        margins = torch.tensor([float(p.get("margin", 0.0)) if cfg.use_margin else 0.0 for p in pairs])
        return c_ids, r_ids, margins

    def scores(seqs):
        ids, _ = pad_batch(seqs, [[1] * len(s) for s in seqs], device=run.device)
        lengths = torch.tensor([len(s) for s in seqs], device=run.device)
        return reward(ids, lengths)

    @torch.no_grad()
    def accuracy(pairs_encoded) -> dict:
        c_ids, r_ids, _ = pairs_encoded
        if not c_ids:
            return {}
        reward.eval()
        correct, margin = 0, 0.0
        for s in range(0, len(c_ids), 16):
            rc, _ = scores(c_ids[s : s + 16])
            rr, _ = scores(r_ids[s : s + 16])
            correct += int((rc > rr).sum())
            margin += float((rc - rr).sum())
        reward.train()
        return {"accuracy": correct / len(c_ids), "mean_margin": margin / len(c_ids), "pairs": len(c_ids)}

    train_enc, val_enc = encode_pairs(train_pairs), encode_pairs(val_pairs)
    before = accuracy(val_enc)
    if before:
        run.evals.append({"step": 0, **before})
        run.log(f"step 0 | held-out pairwise accuracy {before['accuracy']:.3f} on {before['pairs']} pairs")
    reward.train()
    for step, idx in enumerate(_batches(len(train_pairs), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        started = time.perf_counter()
        lr = run.set_lr(optimizer, step - 1)
        seqs = [train_enc[0][i] for i in idx] + [train_enc[1][i] for i in idx]
        r, aux = scores(seqs)
        rc, rr = r[: len(idx)], r[len(idx) :]
        loss = bradley_terry_loss(rc, rr, train_enc[2][idx].to(run.device))
        total = loss + aux["aux_loss"] if aux else loss
        grad, _ = run.step(optimizer, total, params)
        run.record(step, lr, float(loss.detach()), grad, started, acc=float((rc > rr).float().mean()))
        if step % cfg.eval_interval == 0 and step != cfg.steps and val_pairs:
            result = accuracy(val_enc)
            run.evals.append({"step": step, **result})
            run.log(f"step {step} | held-out pairwise accuracy {result['accuracy']:.3f}")
    after = accuracy(val_enc)
    train_acc = accuracy(train_enc)
    if after:
        run.evals.append({"step": cfg.steps, **after})
        run.log(f"step {cfg.steps} | held-out pairwise accuracy {after['accuracy']:.3f} on {after['pairs']} pairs")
    summary: dict[str, Any] = {"method": "reward", "train_pairs": len(train_pairs), "val_pairs": len(val_pairs),
                               "val_accuracy_before": before.get("accuracy"), "val_accuracy": after.get("accuracy"),
                               "train_accuracy": train_acc.get("accuracy"), "final_loss": run.history[-1]["loss"],
                               "skipped_updates": run.skipped}
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if has_lora(run.model):
        summary["adapter"] = str(save_adapter(out / f"{cfg.output_name()}_adapter.pt", run.model, run.base_sha, method="reward"))
        merge_lora(run.model)
    path = save_checkpoint(out / f"{cfg.output_name()}_model_best.pth", model_state=run.model.state_dict(),
                           model_config=run.model.config, tokenizer_json=run.payload["tokenizer_json"],
                           tokenizer_hash=run.payload.get("tokenizer_hash"), kind="reward", stage="reward", step=cfg.steps,
                           reward_head={k: v.detach().cpu() for k, v in reward.head.state_dict().items()},
                           rlhf=_jsonable(summary), evals=run.evals)
    summary["checkpoint"] = str(path)
    run.write_history(summary)
    return summary


# ---- DPO ----------------------------------------------------------------------------------------


def train_dpo(cfg: PreferenceConfig, on_log=None) -> dict:
    run = _Run(cfg, on_log)
    train_pairs, val_pairs = _pairs(cfg, "train"), _pairs(cfg, "val")
    if not train_pairs:
        raise TrainerError("no preference pairs to train on", "run 'assistant data prepare --stage rlhf' first")
    c_ids, c_mask = _encode_all(run, [p["prompt"] for p in train_pairs], [p["chosen"] for p in train_pairs])
    r_ids, r_mask = _encode_all(run, [p["prompt"] for p in train_pairs], [p["rejected"] for p in train_pairs])
    # the reference is the starting model: its log-probs, computed once, are all DPO needs of it
    ref_c = batched_sequence_logprobs(run.model, c_ids, c_mask, device=run.device)
    ref_r = batched_sequence_logprobs(run.model, r_ids, r_mask, device=run.device)
    val = _encode_pairs_with_ref(run, val_pairs)
    run.attach_lora()
    params = run.trainable()
    optimizer = run.optimizer(params)
    before = _dpo_eval(run, val)
    if before:
        run.evals.append({"step": 0, **before})
        run.log(f"step 0 | held-out DPO loss {before['loss']:.4f} | preference accuracy {before['accuracy']:.3f}")
    run.model.train()
    for step, idx in enumerate(_batches(len(train_pairs), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        started = time.perf_counter()
        lr = run.set_lr(optimizer, step - 1)
        chosen, rejected, tmask, aux = _two_halves(run, c_ids, c_mask, r_ids, r_mask, idx)
        losses, rc, rr = dpo_loss(chosen, rejected, ref_c[idx].to(run.device), ref_r[idx].to(run.device), cfg.beta)
        loss = losses.mean()
        total = loss
        if cfg.sft_weight:
            total = total - cfg.sft_weight * (chosen / tmask.sum(-1).clamp(min=1.0)).mean()
        grad, _ = run.step(optimizer, _plus_aux_and_replay(run, total, aux), params)
        run.record(step, lr, float(loss.detach()), grad, started, reward_margin=float((rc - rr).mean()),
                   accuracy=float((rc > rr).float().mean()))
        if step % cfg.eval_interval == 0 and step != cfg.steps and val:
            result = _dpo_eval(run, val)
            run.evals.append({"step": step, **result})
    after = _dpo_eval(run, val)
    if after:
        run.evals.append({"step": cfg.steps, **after})
        run.log(f"step {cfg.steps} | held-out DPO loss {after['loss']:.4f} | preference accuracy {after['accuracy']:.3f}")
    summary = {"method": "dpo", "beta": cfg.beta, "sft_weight": cfg.sft_weight, "replay_fraction": cfg.replay_fraction, "train_pairs": len(train_pairs), "val_pairs": len(val_pairs),
               "val_before": before, "val_after": after, "final_loss": run.history[-1]["loss"], "skipped_updates": run.skipped}
    return run.save_policy(summary)


def _encode_pairs_with_ref(run: _Run, pairs: list[dict]):
    if not pairs:
        return None
    c_ids, c_mask = _encode_all(run, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    r_ids, r_mask = _encode_all(run, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
    ref_c = batched_sequence_logprobs(run.model, c_ids, c_mask, device=run.device)
    ref_r = batched_sequence_logprobs(run.model, r_ids, r_mask, device=run.device)
    return c_ids, c_mask, r_ids, r_mask, ref_c, ref_r


def _pair_dpo_loss(run: _Run, pair_data, idx: list[int]) -> torch.Tensor:
    c_ids, c_mask, r_ids, r_mask, ref_c, ref_r = pair_data
    chosen, rejected, _, _ = _two_halves(run, c_ids, c_mask, r_ids, r_mask, idx)
    losses, _, _ = dpo_loss(chosen, rejected, ref_c[idx].to(run.device), ref_r[idx].to(run.device), run.cfg.beta)
    return losses.mean()


def _two_halves(run: _Run, first_ids, first_masks, second_ids, second_masks, idx: list[int]):
    """One forward over the batch's rows of two aligned lists (chosen and rejected answers, or answers
    and their mismatched partners): (sequence log-probs of the first, of the second, the first's token
    mask, the router's aux losses)."""
    ids, mask = pad_batch([first_ids[i] for i in idx] + [second_ids[i] for i in idx],
                          [first_masks[i] for i in idx] + [second_masks[i] for i in idx], device=run.device)
    logp, tmask, aux = token_logprobs(run.model, ids, mask)
    seq, n = logp.sum(-1), len(idx)
    return seq[:n], seq[n:], tmask[:n], aux


def _plus_aux_and_replay(run: _Run, total: torch.Tensor, aux: dict | None) -> torch.Tensor:
    """The step's loss plus a mixture's router losses and the replay of earlier stages' data."""
    total = total + (aux["aux_loss"] if aux else 0)
    replay = run.replay_loss()
    return total if replay is None else total + replay


def _dpo_eval(run: _Run, val) -> dict:
    if not val:
        return {}
    c_ids, c_mask, r_ids, r_mask, ref_c, ref_r = val
    pc = batched_sequence_logprobs(run.model, c_ids, c_mask, device=run.device)
    pr = batched_sequence_logprobs(run.model, r_ids, r_mask, device=run.device)
    losses, rc, rr = dpo_loss(pc, pr, ref_c, ref_r, run.cfg.beta)
    margin = (pc - ref_c) - (pr - ref_r)
    accuracy = (margin > 0).float() + 0.5 * (margin == 0).float()  # a tie (e.g. at initialisation) counts half
    return {"loss": float(losses.mean()), "accuracy": float(accuracy.mean()),
            "chosen_logp_change": float((pc - ref_c).mean()), "rejected_logp_change": float((pr - ref_r).mean())}


# ---- KTO ----------------------------------------------------------------------------------------


def _labelled(cfg: PreferenceConfig, part: str) -> list[dict]:
    if part == "train" and cfg.labelled is not None:
        return list(cfg.labelled)
    records = pdata.load_split(cfg.data_dir, pdata.LABELLED, part) if (Path(cfg.data_dir) / f"{pdata.LABELLED}_{part}.jsonl").exists() else []
    if not records:  # no thumbs data: every pair gives one good and one bad example
        records = pdata.pairs_to_labelled(_pairs(cfg, part)) if (part == "train" or (Path(cfg.data_dir) / f"{pdata.PAIRS}_{part}.jsonl").exists()) else []
    return records


def mismatched_partners(n: int, seed: int) -> list[int]:
    """A fixed derangement: example i's prompt is paired with example partner[i]'s completion, so
    the reference log-probs of the mismatched pairs can be cached like the matched ones."""
    if n < 2:
        return list(range(n))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    partner = [0] * n
    for k in range(n):
        partner[order[k]] = order[(k + 1) % n]
    return partner


def train_kto(cfg: PreferenceConfig, on_log=None) -> dict:
    run = _Run(cfg, on_log)
    examples = _labelled(cfg, "train")
    if not examples:
        raise TrainerError("no labelled examples to train on", "rate some answers, or prepare preference data")
    labels = torch.tensor([bool(e["label"]) for e in examples])
    n_d, n_u = int(labels.sum()), int((~labels).sum())
    lambda_d, lambda_u = kto_weights(n_d, n_u)
    run.log(f"KTO on {n_d} desirable and {n_u} undesirable examples (lambda_D {lambda_d:.3g}, lambda_U {lambda_u:.3g})")
    prompts = [e["prompt"] for e in examples]
    completions = [e["completion"] for e in examples]
    ids, masks = _encode_all(run, prompts, completions)
    partner = mismatched_partners(len(examples), cfg.seed)
    kl_ids, kl_masks = _encode_all(run, prompts, [completions[j] for j in partner])
    ref = batched_sequence_logprobs(run.model, ids, masks, device=run.device)
    ref_kl = batched_sequence_logprobs(run.model, kl_ids, kl_masks, device=run.device)
    # continual learning: corrections give pairs with a known better answer; DPO on them rides along
    pairs = [p for p in (cfg.pairs or []) if pdata.is_pair(p)]
    pair_data = _encode_pairs_with_ref(run, pairs) if pairs else None
    pair_batches = _batches(len(pairs), cfg.batch_size, cfg.steps, cfg.seed + 1) if pairs else None
    run.attach_lora()
    params = run.trainable()
    optimizer = run.optimizer(params)
    run.model.train()
    for step, idx in enumerate(_batches(len(examples), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        started = time.perf_counter()
        lr = run.set_lr(optimizer, step - 1)
        pi, pi_kl, tmask, aux = _two_halves(run, ids, masks, kl_ids, kl_masks, idx)
        n = len(idx)
        idx_t = torch.tensor(idx)
        z0 = kto_reference_point(pi_kl, ref_kl[idx_t].to(run.device))
        good = labels[idx_t].to(run.device)
        r = ref[idx_t].to(run.device)
        losses = kto_loss(pi[good], r[good], pi[~good], r[~good], z0, cfg.beta, lambda_d, lambda_u)
        loss = losses.sum() / n
        total = loss
        if cfg.sft_weight and good.any():
            per_token = pi / tmask.sum(-1).clamp(min=1.0)
            total = total - cfg.sft_weight * per_token[good].mean()
        if pair_data is not None:
            total = total + _pair_dpo_loss(run, pair_data, next(pair_batches))
        grad, _ = run.step(optimizer, _plus_aux_and_replay(run, total, aux), params)
        reward = (pi - r).detach()
        run.record(step, lr, float(loss.detach()), grad, started, z0=float(z0),
                   good_reward=float(reward[good].mean()) if good.any() else float("nan"),
                   bad_reward=float(reward[~good].mean()) if (~good).any() else float("nan"))
    final = batched_sequence_logprobs(run.model, ids, masks, device=run.device)
    change = final - ref
    summary = {"method": "kto" + ("+dpo" if pairs else ""), "pairs": len(pairs), "beta": cfg.beta, "desirable": n_d,
               "undesirable": n_u, "lambda_d": lambda_d,
               "lambda_u": lambda_u, "final_loss": run.history[-1]["loss"], "skipped_updates": run.skipped,
               "desirable_logp_change": float(change[labels].mean()) if n_d else None,
               "undesirable_logp_change": float(change[~labels].mean()) if n_u else None}
    return run.save_policy(summary)


# ---- online methods: sampling ------------------------------------------------------------------


def _prompt_ids(run: _Run, prompt) -> list[int]:
    from trainer.data.chat_format import render

    ids = render(prompt, run.tokenizer, add_generation_prompt=True).ids
    budget = run.max_len - run.cfg.max_new_tokens
    return ids[-budget:] if budget > 0 else ids[-max(1, run.max_len // 2):]


@torch.no_grad()
def _sample(run: _Run, prompt_ids: list[int], seed: int) -> list[int]:
    from trainer.data.chat_format import stop_token_ids
    from trainer.decode import SamplingParams, decode_tokens

    run.model.eval()
    params = SamplingParams(temperature=run.cfg.temperature, seed=seed)
    out = list(decode_tokens(run.model, prompt_ids, run.cfg.max_new_tokens, params, stop_ids=stop_token_ids(run.tokenizer),
                             context=run.max_len))
    for module in run.model.modules():  # tables built under inference mode cannot take part in backward
        if getattr(module, "_rope_cache", None) is not None:
            module._rope_cache = None
    run.model.train()
    return out


def _rollouts(run: _Run, prompts: list, per_prompt: int, step: int):
    seqs, masks, texts = [], [], []
    for p_index, prompt in enumerate(prompts):
        p_ids = _prompt_ids(run, prompt)
        for g in range(per_prompt):
            new = _sample(run, p_ids, seed=run.cfg.seed * 100003 + step * 1009 + p_index * 31 + g)
            seqs.append(p_ids + new)
            masks.append([0] * len(p_ids) + [1] * len(new))
            texts.append(run.tokenizer.decode(new))
    return seqs, masks, texts


def _reference_token_logprobs(run: _Run, reference, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        if reference is None:
            with adapter_off(run.model):
                logp, _, _ = token_logprobs(run.model, ids, mask)
        else:
            logp, _, _ = token_logprobs(reference, ids, mask)
    return logp


# ---- PPO ----------------------------------------------------------------------------------------


class _ValueHead(torch.nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(d_model, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.float()).squeeze(-1)


def _rl_prompts(cfg: PreferenceConfig) -> list:
    pairs = _pairs(cfg, "train")
    seen, prompts = set(), []
    for p in pairs:
        key = json.dumps(p["prompt"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            prompts.append(p["prompt"])
    if not prompts:
        raise TrainerError("no prompts to sample from", "run 'assistant data prepare --stage rlhf' first")
    return prompts


def train_ppo(cfg: PreferenceConfig, on_log=None) -> dict:
    from trainer.rlhf.reward import load_reward_model

    if not cfg.reward_model:
        raise TrainerError("PPO needs a reward model", "train one with 'assistant train --stage reward' and pass --reward-model")
    run = _Run(cfg, on_log)
    reward_model, _ = load_reward_model(cfg.reward_model, run.device)
    for p in reward_model.parameters():
        p.requires_grad_(False)
    if reward_model.config.vocab_size != run.model.config.vocab_size:
        raise TrainerError("the reward model uses another tokenizer than the policy", "train it from the same checkpoint")
    prompts = _rl_prompts(cfg)
    reference = None if cfg.lora else run.reference_copy()
    run.attach_lora()
    value_head = _ValueHead(run.model.config.d_model).to(run.device)
    params = run.trainable(list(value_head.parameters()))
    optimizer = run.optimizer(params)
    rng = random.Random(cfg.seed)
    per_step = max(1, cfg.batch_size // cfg.group_size)
    mean_rewards = []
    for step in range(1, cfg.steps + 1):
        started = time.perf_counter()
        lr = run.set_lr(optimizer, step - 1)
        batch_prompts = [prompts[rng.randrange(len(prompts))] for _ in range(per_step)]
        seqs, masks, _ = _rollouts(run, batch_prompts, cfg.group_size, step)
        ids, mask = pad_batch(seqs, masks, device=run.device)
        lengths = torch.tensor([len(s) for s in seqs], device=run.device)
        with torch.no_grad():
            score, _ = reward_model(ids, lengths)  # (B,)
            old_logp, tmask, _ = token_logprobs(run.model, ids, mask)
            ref_logp = _reference_token_logprobs(run, reference, ids, mask)
            hidden, _ = run.model(ids[:, :-1], head=False)
            old_values = value_head(hidden) * tmask
            # per-token reward: -kl_coef * (log pi - log ref), plus the reward model's score on the last token
            kl = (old_logp - ref_logp) * tmask
            rewards = -cfg.kl_coef * kl
            last = (tmask * torch.arange(tmask.size(1), device=run.device)).argmax(dim=1)
            rewards[torch.arange(len(seqs)), last] += score
            advantages, returns = gae(rewards, old_values, tmask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, tmask)
        for _ in range(cfg.ppo_epochs):
            logits_hidden, aux = run.model(ids[:, :-1], head=False)
            logits = run.model.lm_head(logits_hidden)
            logp = torch.gather(torch.log_softmax(logits.float(), -1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1) * tmask
            values = value_head(logits_hidden) * tmask
            pg_loss, clip_frac = clipped_policy_loss(logp, old_logp, advantages, tmask, cfg.clip)
            v_loss = clipped_value_loss(values, old_values, returns, tmask, cfg.clip)
            loss = pg_loss + cfg.vf_coef * v_loss + (aux["aux_loss"] if aux else 0)
            grad, _ = run.step(optimizer, loss, params)
        mean_rewards.append(float(score.mean()))
        run.record(step, lr, float(loss.detach()), grad, started, reward=float(score.mean()),
                   kl=float(masked_mean(kl, tmask)), clip_frac=float(clip_frac))
    summary = {"method": "ppo", "prompts": len(prompts), "kl_coef": cfg.kl_coef, "final_loss": run.history[-1]["loss"],
               "reward_first": float(np.mean(mean_rewards[: max(1, len(mean_rewards) // 4)])),
               "reward_last": float(np.mean(mean_rewards[-max(1, len(mean_rewards) // 4):])), "skipped_updates": run.skipped}
    return run.save_policy(summary)


# ---- GRPO ---------------------------------------------------------------------------------------


def train_grpo(cfg: PreferenceConfig, on_log=None) -> dict:
    """GRPO with verifiable rewards: each completion's code runs against its task's tests in the
    sandbox; reward = share of tests passed (plus nothing for style). Advantages are normalised
    within each prompt's group, the KL to the reference is the per-token k3 estimator."""
    from trainer.rlhf.tasks import load_tasks, task_prompt
    from trainer.rlhf.verify import CodeVerifier, extract_code

    run = _Run(cfg, on_log)
    tasks = load_tasks(cfg.extra.get("tasks"))
    reference = None if cfg.lora else run.reference_copy()
    run.attach_lora()
    params = run.trainable()
    optimizer = run.optimizer(params)
    rng = random.Random(cfg.seed)
    per_step = max(1, cfg.batch_size // cfg.group_size)
    means = []
    with CodeVerifier(cfg.sandbox) as verifier:
        for step in range(1, cfg.steps + 1):
            started = time.perf_counter()
            lr = run.set_lr(optimizer, step - 1)
            chosen = [tasks[rng.randrange(len(tasks))] for _ in range(per_step)]
            seqs, masks, texts = _rollouts(run, [task_prompt(t) for t in chosen], cfg.group_size, step)
            rewards = []
            for k, text in enumerate(texts):
                task = chosen[k // cfg.group_size]
                rewards.append(verifier.score(extract_code(text), task["tests"]))
            reward_t = torch.tensor(rewards, dtype=torch.float32, device=run.device)
            adv = group_advantages(reward_t, cfg.group_size)
            ids, mask = pad_batch(seqs, masks, device=run.device)
            with torch.no_grad():
                old_logp, tmask, _ = token_logprobs(run.model, ids, mask)
                ref_logp = _reference_token_logprobs(run, reference, ids, mask)
            logp, _, aux = token_logprobs(run.model, ids, mask)
            per_token_adv = adv.unsqueeze(1).expand_as(logp) * tmask
            pg_loss, _ = clipped_policy_loss(logp, old_logp, per_token_adv, tmask, cfg.clip)
            kl = masked_mean(k3_kl(logp, ref_logp) * tmask, tmask)
            loss = pg_loss + cfg.kl_coef * kl + (aux["aux_loss"] if aux else 0)
            grad, _ = run.step(optimizer, loss, params)
            means.append(float(reward_t.mean()))
            run.record(step, lr, float(loss.detach()), grad, started, reward=float(reward_t.mean()), kl=float(kl))
    summary = {"method": "grpo", "tasks": len(tasks), "group_size": cfg.group_size, "final_loss": run.history[-1]["loss"],
               "reward_first": float(np.mean(means[: max(1, len(means) // 4)])),
               "reward_last": float(np.mean(means[-max(1, len(means) // 4):])), "skipped_updates": run.skipped,
               "verifier": verifier.backend}
    return run.save_policy(summary)


def train_preferences(cfg: PreferenceConfig, on_log=None) -> dict:
    """Run one stage-4 job and return its summary."""
    runners = {"reward": train_reward, "dpo": train_dpo, "kto": train_kto, "ppo": train_ppo, "grpo": train_grpo}
    if cfg.method not in runners:
        raise TrainerError(f"unknown method '{cfg.method}'", f"choose from {', '.join(METHODS)}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise TrainerError("--steps-per-epoch and --batch-size must be at least 1")
    if not math.isfinite(cfg.beta) or cfg.beta <= 0:
        raise TrainerError(f"--beta {cfg.beta} must be positive")
    return runners[cfg.method](cfg, on_log)
