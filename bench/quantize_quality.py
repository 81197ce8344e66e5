"""Quantization quality on models trained by the trainer: perplexity and size, fp32 vs int8/int4.

Trains each architecture at the nano size on a local corpus (the standard library's docstrings,
made by the same helper the tests use) for --steps steps through ``assistant train``, then runs
``assistant quantize`` for int8 and for int4 at each group size, and prints a table of the
validation perplexity change and the Linear-weight size ratio. Bars (issue 3): int8 within +1%,
int4 within +5%.

    .venv/bin/python bench/quantize_quality.py --steps 1000       # ~15 min on one shared core
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="dense,mamba,moe,hybrid")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "assistant-bench-quantize"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from assistant.cli import main as cli
    from tests.trainer.conftest import write_code_corpus, write_text_corpus
    from trainer.checkpoint import load_checkpoint

    work = Path(args.workdir)
    data, tokenizer = work / "processed", work / "tokenizer.json"
    if not (data / "language_val.npy").exists():
        text, code = write_text_corpus(work / "text", modules=400), write_code_corpus(work / "code")
        assert cli(["data", "tokenizer", "--input", str(text), "--code-input", str(code), "--glob", "*.py",
                    "--vocab-size", "2048", "--output", str(tokenizer)]) == 0
        assert cli(["data", "prepare", "--stage", "language", "--input", str(text), "--tokenizer", str(tokenizer),
                    "--output-dir", str(data)]) == 0
    rows = []
    for arch in [a for a in args.archs.split(",") if a]:
        out = work / f"{arch}-{args.steps}"
        best = out / ("language_model_best.pth" if arch == "dense" else f"language_{arch}_model_best.pth")
        if not best.exists():
            extra = ["--use-rmsnorm", "--use-rope", "--use-swiglu"] if arch in ("dense", "moe") else []
            assert cli(["train", "--stage", "language", "--architecture", arch, "--model-size", "nano", "--data-dir", str(data),
                        "--output-dir", str(out), "--batch-size", "16", "--seq-len", "128", "--steps-per-epoch", str(args.steps),
                        "--eval-interval", str(args.steps), "--device", "cpu", "--json", *extra]) == 0
        for mode, group in [("int8", None), ("int4", 32), ("int4", 64), ("int4", 128)]:
            target = out / f"{mode}-{group or 'channel'}.pth"
            argv = ["quantize", "--checkpoint", str(best), "--quantization", mode, "--data-dir", str(data),
                    "--output", str(target), "--eval-windows", "64", "--json"]
            if group:
                argv += ["--group-size", str(group)]
            assert cli(argv) == 0
            report = load_checkpoint(target)["quantization"]["report"]
            rows.append((arch, mode, group, report))
    print(f"\n{date.today()}, torch {torch.__version__}, {args.threads} thread(s), {args.steps} training steps per model\n")
    print("| arch | format | ppl fp32 | ppl quantized | change | bar | Linear size ratio | decode tok/s fp32 -> quantized |")
    print("|------|--------|----------|---------------|--------|-----|-------------------|-------------------------------|")
    for arch, mode, group, r in rows:
        ppl, speed = r["perplexity"], r["decode_tokens_per_s"]
        bar = 1.0 if mode == "int8" else 5.0
        verdict = "ok" if ppl["change_pct"] <= bar else "MISSED"
        name = mode if not group else f"{mode} g{group}"
        print(f"| {arch} | {name} | {ppl['before']:.2f} | {ppl['after']:.2f} | {ppl['change_pct']:+.2f}% | "
              f"+{bar:.0f}% {verdict} | {r['size']['linear_ratio']:.2f}x | {speed['before']:.0f} -> {speed['after']:.0f} |")
    (work / "results.json").write_text(json.dumps([(a, m, g, r) for a, m, g, r in rows], indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
