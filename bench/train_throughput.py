"""Training throughput of the four architectures against Hugging Face peers of the same shape.

For each architecture at each size, one training step (forward, backward, AdamW) on random tokens:
tokens/s, step time, peak memory, parameters (total/active) and MFU where the device's peak is
known, next to the matching ``transformers`` model built from a random config:

    dense  -> LlamaForCausalLM   (ours configured Llama-shaped: RMSNorm, RoPE, SwiGLU, untied)
    moe    -> MixtralForCausalLM (8 experts, top-2, SwiGLU experts)
    mamba  -> MambaForCausalLM   with use_mambapy=True (its parallel-scan path; needs `mambapy`)
    hybrid -> (no peer; compared with our dense)

Each side runs its own default training step: ours is the trainer's loss (``lm_loss``) and optimizer
(``make_optimizer``); the peer's loss is ``F.cross_entropy`` and its optimizer is fused AdamW, the
default of ``transformers.Trainer`` on torch >= 2.8.

Each measurement runs in its own subprocess (clean peak memory); ours and the peer alternate,
``--repeats`` times, and the ratio of medians is reported, because the machine is shared.

    python bench/train_throughput.py --sizes nano,tiny --seq 1024 --batch 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB = {"nano": 4096}  # the other sizes use the presets' 32000


def llama_shaped_overrides(size: str) -> dict:
    from trainer.models.config import SIZE_PRESETS

    d_model, n_layers, n_heads, d_ff, vocab, _ = SIZE_PRESETS[size]
    return dict(norm="rmsnorm", position="rope", mlp="swiglu", d_ff=d_ff, vocab_size=VOCAB.get(size, vocab),
                max_seq_len=8192)


def build_ours(arch: str, size: str):
    from trainer.models import build_model, preset_config

    overrides = llama_shaped_overrides(size)
    if arch == "mamba":
        overrides = dict(vocab_size=overrides["vocab_size"], max_seq_len=8192)
    if arch == "hybrid":
        overrides = dict(vocab_size=overrides["vocab_size"], max_seq_len=8192, mlp="swiglu", d_ff=overrides["d_ff"])
    config = preset_config(size, arch, **overrides)
    model = build_model(config)

    def step_loss(x, y):
        from trainer.models import lm_loss

        logits, aux = model(x)
        loss = lm_loss(logits, y)
        return loss + aux["aux_loss"] if aux else loss

    return model, config, step_loss


def build_peer(arch: str, size: str):
    import transformers as tf

    from trainer.models.config import SIZE_PRESETS

    d_model, n_layers, n_heads, d_ff, vocab, _ = SIZE_PRESETS[size]
    vocab = VOCAB.get(size, vocab)
    if arch == "dense":
        config = tf.LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
                                num_attention_heads=n_heads, num_key_value_heads=n_heads, max_position_embeddings=8192,
                                tie_word_embeddings=False)
        model = tf.LlamaForCausalLM(config)
    elif arch == "moe":
        config = tf.MixtralConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
                                  num_attention_heads=n_heads, num_key_value_heads=n_heads, num_local_experts=8,
                                  num_experts_per_tok=2, max_position_embeddings=8192, tie_word_embeddings=False,
                                  output_router_logits=True, router_aux_loss_coef=0.01)
        model = tf.MixtralForCausalLM(config)
    elif arch == "mamba":
        import mambapy  # noqa: F401 - without it use_mambapy silently falls back

        config = tf.MambaConfig(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers, state_size=16,
                                expand=2, conv_kernel=4, use_mambapy=True, use_associative_scan=False,
                                tie_word_embeddings=True)
        model = tf.MambaForCausalLM(config)
    else:
        raise ValueError(f"no peer for {arch}")
    model.config.use_cache = False

    def step_loss(x, y):
        out = model(input_ids=x, labels=None, use_cache=False)
        import torch.nn.functional as F

        loss = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)).float(), y.reshape(-1))
        if getattr(out, "aux_loss", None) is not None:
            loss = loss + 0.01 * out.aux_loss
        return loss

    return model, model.config, step_loss


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this process: warm up, time ``steps`` training steps."""
    import resource

    import torch

    from common.device import choose_device

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = choose_device(args.device)
    build = build_ours if args.impl == "ours" else build_peer
    model, config, step_loss = build(args.arch, args.size)
    model.to(device).train()
    total = sum(p.numel() for p in model.parameters())
    from trainer.models import count_parameters

    active = count_parameters(model)[1] if args.impl == "ours" else total
    if args.impl == "peer" and args.arch == "moe":
        expert = sum(p.numel() for n, p in model.named_parameters() if "experts" in n)
        active = total - expert + expert * 2 // 8
    if args.impl == "ours":  # the trainer's own optimizer (fused AdamW where the device has it)
        from trainer.loop import make_optimizer

        optimizer = make_optimizer(model.parameters(), 1e-4, 0.1, device)
    else:  # what transformers' Trainer picks by default on torch >= 2.8: optim="adamw_torch_fused"
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    vocab = config.vocab_size
    x = torch.randint(0, vocab, (args.batch, args.seq + 1), device=device)
    inputs, targets = x[:, :-1], x[:, 1:]

    def one_step():
        loss = step_loss(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):  # allocations, lazy init, the allocator's and caches' steady state
        one_step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - started)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": statistics.median(times), "all_s": times, "peak_mb": peak, "total": total, "active": active,
            "device": str(device), "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()}


WORKER_FLAGS: list[str] = []  # --threads and --warmup, passed on to every measurement


def measure(impl: str, arch: str, size: str, seq: int, batch: int, steps: int, device: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--arch", arch, "--size", size, "--seq", str(seq),
           "--batch", str(batch), "--steps", str(steps), "--device", device, *WORKER_FLAGS]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def mfu(result: dict, arch: str, seq: int, batch: int, config_layers: int, d_model: int) -> str:
    from trainer.loop import PEAK_FLOPS

    name = result.get("device_name") or ""
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    if not result.get("device", "").startswith("cuda") or peak is None:
        return "unknown"
    attn_layers = 0 if arch == "mamba" else (config_layers // 4 if arch == "hybrid" else config_layers)
    flops = (6 * result["active"] + 12 * attn_layers * d_model * seq) * seq * batch
    return f"{100 * flops / result['step_s'] / peak:.0f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="nano,tiny")
    parser.add_argument("--archs", default="dense,mamba,moe,hybrid")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--mamba-long-seq", type=int, default=4096, help="also time mamba here (linearity)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per run (0: torch's default)")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.impl = args.worker
        print(json.dumps(worker(args)))
        return 0

    from trainer.models.config import SIZE_PRESETS

    WORKER_FLAGS.extend(["--threads", str(args.threads), "--warmup", str(args.warmup)])
    rows, raw = [], {}
    for size in args.sizes.split(","):
        d_model, n_layers = SIZE_PRESETS[size][0], SIZE_PRESETS[size][1]
        ours_dense = None
        for arch in args.archs.split(","):
            impls = ["ours"] + (["peer"] if arch in ("dense", "moe", "mamba") else [])
            runs: dict[str, list[dict]] = {impl: [] for impl in impls}
            for _ in range(args.repeats):  # alternate ours/peer so load changes hit both alike
                for impl in impls:
                    runs[impl].append(measure(impl, arch, size, args.seq, args.batch, args.steps, args.device))
            summary = {}
            for impl, results in runs.items():
                ok = [r for r in results if "error" not in r]
                if not ok:
                    summary[impl] = {"error": results[-1]["error"]}
                    continue
                best = dict(ok[0])
                best["step_s"] = statistics.median(r["step_s"] for r in ok)
                best["peak_mb"] = max(r["peak_mb"] for r in ok)
                summary[impl] = best
            raw[f"{size}/{arch}"] = runs
            if arch == "dense":
                ours_dense = summary["ours"]
            tokens = args.seq * args.batch
            for impl in impls:
                r = summary[impl]
                label = {"dense": "Llama", "moe": "Mixtral", "mamba": "HF Mamba (mambapy)"}.get(arch) if impl == "peer" else "ours"
                if "error" in r:
                    rows.append([size, arch, label, "error: " + r["error"][:60], "", "", "", "", ""])
                    continue
                ratio = ""
                if impl == "ours" and "peer" in summary and "error" not in summary["peer"]:
                    pairs = [(o["step_s"], p["step_s"]) for o, p in zip(runs["ours"], runs["peer"])
                             if "error" not in o and "error" not in p]
                    faster = sum(o < p for o, p in pairs)
                    ratio = f"{summary['peer']['step_s'] / r['step_s']:.2f}x vs peer (faster in {faster}/{len(pairs)} pairs)"
                if impl == "ours" and arch in ("mamba", "hybrid") and ours_dense and "error" not in ours_dense:
                    ratio += ("; " if ratio else "") + f"{r['step_s'] / ours_dense['step_s']:.2f}x our dense time"
                rows.append([size, arch, label, f"{tokens / r['step_s']:,.0f}", f"{r['step_s'] * 1000:,.0f}",
                             f"{r['peak_mb']:,.0f}", f"{r['total'] / 1e6:.1f}M/{r['active'] / 1e6:.1f}M",
                             mfu(r, arch, args.seq, args.batch, n_layers, d_model), ratio])
            if arch == "mamba" and args.mamba_long_seq:
                long = [measure("ours", "mamba", size, args.mamba_long_seq, args.batch, args.steps, args.device)
                        for _ in range(args.repeats)]
                long_ok = [r for r in long if "error" not in r]
                if long_ok and "error" not in summary["ours"]:
                    step = statistics.median(r["step_s"] for r in long_ok)
                    growth = step / summary["ours"]["step_s"]
                    rows.append([size, "mamba", f"ours @ seq {args.mamba_long_seq}", f"{args.mamba_long_seq * args.batch / step:,.0f}",
                                 f"{step * 1000:,.0f}", f"{max(r['peak_mb'] for r in long_ok):,.0f}", "", "",
                                 f"{growth:.2f}x the seq-{args.seq} step ({args.mamba_long_seq // args.seq}x tokens)"])
                raw[f"{size}/mamba@{args.mamba_long_seq}"] = long

    header = ["size", "arch", "impl", "tokens/s", "step ms", "peak MB", "params total/active", "mfu", "ratio"]
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    threads = args.threads or "default"
    print(f"seq {args.seq}, batch {args.batch}, {args.warmup} warm-up + {args.steps} timed steps x {args.repeats} repeats (median), "
          f"device {args.device}, threads {threads}")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
