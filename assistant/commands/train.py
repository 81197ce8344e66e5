"""``assistant train``: the staged training pipeline (the seed's scripts/train.py flags)."""

from __future__ import annotations

import argparse
import json
import os

from assistant.commands._args import non_negative_int, positive_float, positive_int

ARCHITECTURES = ("dense", "mamba", "moe", "hybrid")
SIZES = ("nano", "tiny", "medium", "large", "xlarge")
STAGES = ("language", "code", "tool_calling", "reward", "rlhf")
METHODS = ("dpo", "kto", "ppo", "grpo")


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (stage 1 language, stage 2 code, stage 4 reward/rlhf, ...)",
        description="Train one stage. Stage 2 continues a stage-1 checkpoint: "
        "--stage code --checkpoint models/language_model_best.pth. Stage 4: --stage reward trains a reward "
        "model on preference pairs; --stage rlhf --method dpo|kto|ppo|grpo aligns a checkpoint "
        "(data from 'assistant data prepare --stage rlhf'). Works on CUDA, MPS and CPU; "
        "under 'torchrun --nproc_per_node=N' stages 1-2 train on N processes (DDP).",
    )
    p.add_argument("--stage", choices=STAGES, default="language")
    p.add_argument("--architecture", choices=ARCHITECTURES, help="default: dense, or the checkpoint's")
    p.add_argument("--model-size", choices=SIZES, default="tiny")
    p.add_argument("--data-dir", default="data/processed", help="prepared data (default: data/processed)")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the one recorded with the data)")
    p.add_argument("--output-dir", default="models", help="where checkpoints go (default: models)")
    p.add_argument("--checkpoint", help="initialise the weights from this checkpoint")
    p.add_argument("--resume", nargs="?", const="auto", metavar="PATH",
                   help="continue an interrupted run (default: <output-dir>/<stage>_model_last.pth)")
    t = p.add_argument_group("optimisation")
    t.add_argument("--batch-size", type=positive_int, default=4)
    t.add_argument("--gradient-accumulation-steps", type=positive_int, default=1)
    t.add_argument("--seq-len", type=positive_int, help="tokens per sequence (default: min(1024, model max))")
    t.add_argument("--num-epochs", type=positive_int, default=1)
    t.add_argument("--steps-per-epoch", type=positive_int, help="default: one pass over the training tokens")
    t.add_argument("--learning-rate", type=positive_float, help="peak learning rate (default: the stage's)")
    t.add_argument("--warmup-steps", type=non_negative_int)
    t.add_argument("--weight-decay", type=float, default=0.1)
    t.add_argument("--grad-clip", type=float, default=1.0)
    t.add_argument("--eval-interval", type=positive_int, default=100)
    t.add_argument("--eval-batches", type=positive_int, default=8)
    t.add_argument("--checkpoint-interval", type=positive_int, help="default: --eval-interval")
    t.add_argument("--log-interval", type=positive_int, default=10)
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    o = p.add_argument_group("training-only optimisations (safe for every stage)")
    o.add_argument("--use-compile", action="store_true", help="torch.compile the model")
    o.add_argument("--use-amp", action="store_true", help="mixed precision (bf16, or fp16 + scaler on older CUDA)")
    o.add_argument("--use-gradient-checkpointing", action="store_true")
    a = p.add_argument_group("architecture (from scratch only; a checkpoint's own values win)")
    a.add_argument("--d-model", type=positive_int, help="width (default: the size preset's)")
    a.add_argument("--n-layers", type=positive_int, help="depth (default: the size preset's)")
    a.add_argument("--n-heads", type=positive_int, help="attention heads (default: the size preset's)")
    a.add_argument("--d-ff", type=positive_int, help="MLP hidden size (default: the size preset's)")
    a.add_argument("--max-seq-len", type=positive_int, help="context window (default: the size preset's)")
    a.add_argument("--use-rmsnorm", action="store_const", const="rmsnorm", dest="norm", help="RMSNorm instead of LayerNorm")
    a.add_argument("--use-rope", action="store_const", const="rope", dest="position", help="RoPE instead of learned positions")
    a.add_argument("--use-swiglu", action="store_const", const="swiglu", dest="mlp", help="SwiGLU instead of the GELU MLP")
    a.add_argument("--n-kv-heads", type=positive_int, help="grouped-query attention with this many key/value heads")
    a.add_argument("--tie-embeddings", action="store_const", const=True, help="share input and output embeddings")
    a.add_argument("--dropout", type=float)
    a.add_argument("--num-experts", type=positive_int, help="MoE experts (default 8)")
    a.add_argument("--top-k", type=positive_int, help="MoE experts per token (default 2)")
    a.add_argument("--aux-loss-weight", type=float, help="MoE load-balancing loss weight (default 0.01)")
    a.add_argument("--z-loss-weight", type=float, help="MoE router z-loss weight (default 0.001)")
    a.add_argument("--attention-every", type=positive_int, help="hybrid: every Nth layer attends (default 4)")
    a.add_argument("--window-size", type=positive_int, help="hybrid: sliding attention window (default 256)")
    a.add_argument("--d-state", type=positive_int, help="Mamba state size (default 16)")
    lo = p.add_argument_group("LoRA adapters (any stage): train a low-rank adapter, base weights frozen")
    lo.add_argument("--lora-rank", type=positive_int, help="adapter rank (e.g. 8); without it every weight trains")
    lo.add_argument("--lora-alpha", type=positive_float, help="adapter scale alpha (default: 2 x rank)")
    lo.add_argument("--lora-targets", default="all-linear",
                    help="all-linear (default) or a comma list of Linear names: q_proj,k_proj,v_proj,o_proj,fc,proj,"
                    "gate,up,in_proj,x_proj,dt_proj,out_proj")
    r = p.add_argument_group("stage 4 (reward, rlhf)")
    r.add_argument("--method", choices=METHODS, default="dpo", help="rlhf: dpo (default), kto, ppo or grpo")
    r.add_argument("--beta", type=positive_float, default=0.1, help="DPO/KTO temperature (default 0.1)")
    r.add_argument("--sft-weight", type=float, default=0.0,
                   help="dpo/kto: add this x the NLL of the preferred answers (RPO; keeps perplexity from collapsing)")
    r.add_argument("--replay-fraction", type=float, default=None,
                   help="share of stage 1-2 data (from --data-dir) mixed into each step: dpo/kto (default 0.1) and "
                   "tool_calling (default 0; e.g. 0.15 keeps the language and code modelling)")
    r.add_argument("--margin", action="store_true", help="reward: subtract each pair's margin in the Bradley-Terry loss")
    r.add_argument("--reward-model", help="ppo: the reward model checkpoint (models/reward_model_best.pth)")
    r.add_argument("--group-size", type=positive_int, default=4, help="grpo/ppo: samples per prompt (default 4)")
    r.add_argument("--max-new-tokens", type=positive_int, default=64, help="ppo/grpo: sampled reply length (default 64)")
    r.add_argument("--kl-coef", type=float, default=0.05, help="ppo/grpo: KL penalty to the reference (default 0.05)")
    r.add_argument("--temperature", type=positive_float, default=1.0, help="ppo/grpo: sampling temperature")
    r.add_argument("--tasks", help="grpo: JSONL of {request, solution, tests} (default: the built-in tasks)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(handler=run)


MODEL_FLAGS = ("d_model", "n_layers", "n_heads", "d_ff", "max_seq_len", "norm", "position", "mlp", "n_kv_heads", "tie_embeddings", "dropout", "num_experts", "top_k",
               "aux_loss_weight", "z_loss_weight", "attention_every", "window_size", "d_state")


def _lora(args: argparse.Namespace) -> dict | None:
    if args.lora_rank is None:
        if args.lora_alpha is not None:
            from common.errors import UsageError

            raise UsageError("--lora-alpha needs --lora-rank", "pass --lora-rank N too")
        return None
    return {"rank": args.lora_rank, "alpha": args.lora_alpha or 2.0 * args.lora_rank, "targets": args.lora_targets}


def _replay_fraction(args: argparse.Namespace, default: float) -> float:
    from common.errors import UsageError

    value = default if args.replay_fraction is None else args.replay_fraction
    if not 0 <= value < 1:
        raise UsageError(f"--replay-fraction {value} must be in [0, 1)", "e.g. 0.1")
    if value > 0 and args.stage in ("language", "code"):
        raise UsageError(f"--replay-fraction applies to tool_calling and rlhf, not --stage {args.stage}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.stage in ("reward", "rlhf"):
        return run_preferences(args)
    from trainer.loop import TrainConfig, train

    cfg = TrainConfig(
        stage=args.stage, architecture=args.architecture, model_size=args.model_size, data_dir=args.data_dir,
        tokenizer=args.tokenizer, output_dir=args.output_dir, checkpoint=args.checkpoint, resume=args.resume,
        batch_size=args.batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        seq_len=args.seq_len, num_epochs=args.num_epochs, steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
        grad_clip=args.grad_clip, eval_interval=args.eval_interval, eval_batches=args.eval_batches,
        checkpoint_interval=args.checkpoint_interval, log_interval=args.log_interval, seed=args.seed,
        device=args.device, use_amp=args.use_amp, use_compile=args.use_compile,
        use_gradient_checkpointing=args.use_gradient_checkpointing,
        model_overrides={name: getattr(args, name) for name in MODEL_FLAGS},
        lora=_lora(args),
        replay_fraction=_replay_fraction(args, default=0.0),
        quiet=args.json,
    )
    summary = train(cfg, on_log=(lambda line: None) if args.json else _print_line)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        best = summary["best_val_loss"]
        print(f"done: best val loss {best:.4f} -> {summary['best_checkpoint']}" if best is not None
              else f"done -> {summary['last_checkpoint']}")
    return 0


def run_preferences(args: argparse.Namespace) -> int:
    """Stage 4: the reward model, or DPO/KTO/PPO/GRPO on a trained checkpoint."""
    from common.errors import UsageError
    from trainer.lora import LoRAConfig
    from trainer.rlhf.train import PreferenceConfig, train_preferences

    if not args.checkpoint:
        raise UsageError(f"--stage {args.stage} starts from a trained model", "pass --checkpoint models/code_model_best.pth")
    if args.resume:
        raise UsageError(f"--resume is not supported for --stage {args.stage}", "runs of this stage are short; start again")
    lora = _lora(args)
    sandbox = None
    if args.stage == "rlhf" and args.method == "grpo":
        from pathlib import Path

        from assistant.commands.sandbox import load_sandbox_settings

        sandbox = load_sandbox_settings(Path.cwd())
    replay_fraction = _replay_fraction(args, default=0.1)
    replay = None
    if args.stage == "rlhf" and args.method in ("dpo", "kto") and replay_fraction > 0:
        from trainer.checkpoint import load_checkpoint
        from trainer.data.dataset import replay_tokens

        replay, _ = replay_tokens(args.data_dir, load_checkpoint(args.checkpoint).get("tokenizer_hash"))
    cfg = PreferenceConfig(
        method="reward" if args.stage == "reward" else args.method, checkpoint=args.checkpoint, data_dir=args.data_dir,
        output_dir=args.output_dir, reward_model=args.reward_model,
        steps=args.num_epochs * (args.steps_per_epoch or 100), batch_size=args.batch_size,
        learning_rate=args.learning_rate, warmup_steps=args.warmup_steps, weight_decay=0.0 if args.weight_decay == 0.1 else args.weight_decay,  # the pretraining default does not apply
        grad_clip=args.grad_clip, beta=args.beta, sft_weight=args.sft_weight, use_margin=args.margin, max_len=args.seq_len or 256,
        lora=LoRAConfig(**lora) if lora else None, seed=args.seed, device=args.device, eval_interval=args.eval_interval,
        log_interval=args.log_interval, group_size=args.group_size, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, kl_coef=args.kl_coef, sandbox=sandbox,
        replay_tokens=replay or None, replay_fraction=replay_fraction if replay else 0.0, extra={"tasks": args.tasks}, quiet=args.json,
    )
    summary = train_preferences(cfg, on_log=(lambda line: None) if args.json else _print_line)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    if cfg.method == "reward":
        acc = summary.get("val_accuracy")
        print(f"done: held-out pairwise accuracy {acc:.3f} on {summary['val_pairs']} pairs "
              f"(before training {summary['val_accuracy_before']:.3f}) -> {summary['checkpoint']}" if acc is not None
              else f"done (no held-out pairs) -> {summary['checkpoint']}")
    else:
        print(f"done: {cfg.method} -> {summary['checkpoint']}" + (f" (adapter {summary['adapter']})" if summary.get("adapter") else ""))
    return 0


def _print_line(line: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(line)
    except ImportError:  # pragma: no cover
        print(line, flush=True)
