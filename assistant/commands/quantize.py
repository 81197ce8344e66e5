"""``assistant quantize``: stage 9, weight-only int8/int4 quantization of a checkpoint.

Accepts the seed's ``scripts/quantize_model.py`` flags (``--checkpoint``, ``--quantization``).
"""

from __future__ import annotations

import argparse
import json

from assistant.commands._args import positive_int

MODES = ("int8", "int4")
GROUP_SIZES = (32, 64, 128)


def register(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help="quantize a checkpoint to int8 or int4 (stage 9)",
        description="Weight-only quantization of every Linear layer: int8 with one scale per output "
        "channel, or int4 with one scale and zero per group of --group-size weights. Prints and stores in "
        "the new checkpoint: size, validation perplexity and decode tokens/s, before and after.",
    )
    add_arguments(p)
    p.set_defaults(handler=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="the float checkpoint to quantize (.pth)")
    p.add_argument("--quantization", required=True, choices=MODES, help="int8 or int4")
    p.add_argument("--group-size", type=int, choices=GROUP_SIZES, default=64, help="int4 group size (default 64)")
    p.add_argument("--quantize-embeddings", action="store_true", help="also store the token embeddings as int8")
    p.add_argument("--output", help="where to write (default: <checkpoint>_<quantization>.pth beside it)")
    p.add_argument("--data-dir", default="data/processed",
                   help="prepared data whose <stage>_val.npy measures perplexity (default: data/processed)")
    p.add_argument("--stage", choices=("language", "code"), help="which validation split (default: the checkpoint's stage)")
    p.add_argument("--eval-windows", type=positive_int, default=32, help="validation windows for perplexity (default 32)")
    p.add_argument("--seq-len", type=positive_int, help="tokens per validation window (default: the trained length, at most 256)")
    p.add_argument("--decode-tokens", type=positive_int, default=64, help="tokens generated to time decoding (default 64)")
    p.add_argument("--device", default="auto", help="where to measure: auto, cpu, cuda, mps")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from trainer.quantize import format_report, run_quantization

    report = run_quantization(
        args.checkpoint, args.quantization, group_size=args.group_size, embeddings=args.quantize_embeddings,
        output=args.output, data_dir=args.data_dir, stage=args.stage, eval_windows=args.eval_windows,
        seq_len=args.seq_len, device=args.device, decode_tokens=args.decode_tokens,
        on_log=None if args.json else print,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_report(report)))
    return 0
