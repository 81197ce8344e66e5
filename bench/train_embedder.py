"""Tune the index's embedder (all-MiniLM-L6-v2) on code: a LoRA adapter over its linear layers.

Pairs come from bench/embedder_pairs.py (a docstring's first line -> its function's chunk, from
packages the retrieval benchmark and the reranker never use). The loss is the in-batch contrastive
one of sentence-transformers' MultipleNegativesRankingLoss, both directions (query -> chunk and
chunk -> query; every other pair of the batch is a negative), with mean pooling and unit vectors as
the index computes them. Only the low-rank factors train; the result is small enough to ship in git
(index/embedder_adapter.safetensors) and is merged into the packaged weights when the index loads
(index/adapter.py). Needs torch, transformers and safetensors; a GPU makes it take a minute.

    .venv/bin/python bench/train_embedder.py --pairs /tmp/pairs.jsonl --output index/embedder_adapter.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.adapter import TARGETS, add_lora, lora_state, save_adapter


def _embed(model, tokenizer, texts, max_len, device):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device)
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)


def _loss(q, d, scale):
    logits = q @ d.T * scale
    labels = torch.arange(len(q), device=q.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@torch.no_grad()
def _evaluate(model, tokenizer, pairs, args, device) -> dict:
    """Mean rank-1 accuracy and loss over fixed batches of held-back pairs."""
    model.eval()
    hits, losses = [], []
    for i in range(0, len(pairs) - args.batch_size + 1, args.batch_size):
        chunk = pairs[i:i + args.batch_size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            q = _embed(model, tokenizer, [p["query"] for p in chunk], 64, device).float()
            d = _embed(model, tokenizer, [p["text"] for p in chunk], args.max_len, device).float()
        losses.append(_loss(q, d, args.scale).item())
        hits.append((q @ d.T).argmax(1).eq(torch.arange(len(q), device=device)).float().mean().item())
    model.train()
    return {"loss": sum(losses) / max(len(losses), 1), "top1": sum(hits) / max(len(hits), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--base", help="sentence-transformers folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--scale", type=float, default=20.0, help="cosine -> logit (sentence-transformers' default)")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--valid", type=int, default=2048, help="pairs held back to report progress")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history", help="also write the evaluations as JSON here")
    args = parser.parse_args(argv)
    from transformers import AutoModel, AutoTokenizer

    if args.base:
        base = Path(args.base)
    else:
        from index.embedding import default_model_path

        base = default_model_path()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    pairs = [json.loads(line) for line in Path(args.pairs).read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(args.seed).shuffle(pairs)
    valid, train = pairs[:args.valid], pairs[args.valid:]
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModel.from_pretrained(str(base), local_files_only=True).float().to(device)  # fp32 master weights
    for p in model.parameters():
        p.requires_grad_(False)
    add_lora(model, args.rank, args.alpha)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    steps = math.ceil(len(train) / args.batch_size * args.epochs)
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / max(1, steps - warmup)))
    history = [{"step": 0, **_evaluate(model, tokenizer, valid, args, device)}]
    print(f"{len(train)} train pairs, {len(valid)} held back, {steps} steps of {args.batch_size}; "
          f"LoRA rank {args.rank} on {', '.join(TARGETS)}: {sum(p.numel() for p in params):,} parameters", flush=True)
    print(f"step 0: held-back loss {history[0]['loss']:.4f}, top-1 in batch {history[0]['top1']:.3f}", flush=True)
    order, cursor, start = list(range(len(train))), len(train), time.time()
    for step in range(1, steps + 1):
        if cursor + args.batch_size > len(order):
            random.Random(args.seed + step).shuffle(order)
            cursor = 0
        batch = [train[i] for i in order[cursor:cursor + args.batch_size]]
        cursor += args.batch_size
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            q = _embed(model, tokenizer, [p["query"] for p in batch], 64, device).float()
            d = _embed(model, tokenizer, [p["text"] for p in batch], args.max_len, device).float()
        loss = _loss(q, d, args.scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            history.append({"step": step, "train_loss": loss.item(), **_evaluate(model, tokenizer, valid, args, device)})
            h = history[-1]
            print(f"step {step}/{steps}: train loss {h['train_loss']:.4f}, held-back loss {h['loss']:.4f}, "
                  f"top-1 {h['top1']:.3f} ({time.time() - start:.0f} s)", flush=True)
    info = {"rank": args.rank, "alpha": args.alpha, "pairs": len(train), "steps": steps, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "epochs": args.epochs, "before": history[0], "after": history[-1],
            "date": time.strftime("%Y-%m-%d"), "by": "bench/train_embedder.py",
            "sources": sorted({p.get("source", "") for p in train})}
    save_adapter(Path(args.output), lora_state(model), info)
    print(f"wrote {args.output}")
    if args.history:
        Path(args.history).write_text(json.dumps(history, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
