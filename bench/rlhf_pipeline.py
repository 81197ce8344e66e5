"""Stages 4 and 10 end to end on this machine, printing the before/after tables of docs/RLHF.md.

Everything goes through the ``assistant`` CLI: a tokenizer and stage 1/2 data from the standard
library's docstrings and sources, a nano model (stage 1, then stage 2), checked preference pairs
(sandbox tests, analyze_code, tool-call parser), a reward model, DPO and KTO with LoRA, then a
stage-10 retrain from thumbs in the real feedback store, gated and promoted.

    .venv/bin/python bench/rlhf_pipeline.py [--workdir DIR] [--steps-scale 1.0]
    .venv/bin/python bench/rlhf_pipeline.py --stage10-base CHECKPOINT --stage10-data DIR   # stage 10 only

Needs Docker with the sandbox image (``assistant sandbox build``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from assistant.cli import main


def run(*argv: str) -> None:
    started = time.perf_counter()
    code = main([*argv])
    if code != 0:
        raise SystemExit(f"failed ({code}): assistant {' '.join(argv)}")
    print(f"  [{time.perf_counter() - started:.0f}s] assistant {' '.join(argv[:3])} ...", file=sys.stderr)


def perplexities(checkpoint: Path, data: Path) -> dict:
    import numpy as np

    from trainer.continual.gate import load_for_eval, window_losses
    from trainer.data.dataset import open_tokens

    model, _, _ = load_for_eval(checkpoint)
    return {stage: math.exp(float(window_losses(model, np.asarray(open_tokens(data / f"{stage}_val.npy")), 128, 32).mean()))
            for stage in ("language", "code")}


def main_(args: argparse.Namespace) -> None:
    from tests.trainer.conftest import write_code_corpus, write_text_corpus

    torch.set_num_threads(args.threads)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="rlhf-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    (root / ".assistant").mkdir(exist_ok=True)
    (root / ".assistant" / "settings.toml").write_text('[sandbox]\nbackend = "docker"\nimage = "assistant-sandbox:bookworm"\n')
    scale = args.steps_scale
    steps = lambda n: str(max(1, int(n * scale)))
    text, code = write_text_corpus(root / "corpus" / "text"), write_code_corpus(root / "corpus" / "code")
    tok, data, models = root / "tokenizer.json", root / "data", root / "models"
    run("data", "tokenizer", "--input", str(text), "--code-input", str(code), "--glob", "*.py", "--vocab-size", "2048",
        "--output", str(tok))
    run("data", "prepare", "--stage", "language", "--input", str(text), "--tokenizer", str(tok), "--output-dir", str(data))
    run("data", "prepare", "--stage", "code", "--input", str(code), "--glob", "*.py", "--tokenizer", str(tok), "--output-dir", str(data))
    common = ["--model-size", "nano", "--data-dir", str(data), "--output-dir", str(models), "--batch-size", "8",
              "--seq-len", "128", "--device", "cpu", "--json"]
    run("train", "--stage", "language", *common, "--steps-per-epoch", steps(600), "--eval-interval", "200",
        "--use-rmsnorm", "--use-rope", "--use-swiglu")
    run("train", "--stage", "code", *common, "--checkpoint", str(models / "language_model_best.pth"),
        "--steps-per-epoch", steps(300), "--eval-interval", "100")
    policy = models / "code_model_best.pth"
    run("data", "prepare", "--stage", "rlhf", "--output-dir", str(data))
    manifest = json.loads((data / "rlhf_manifest.json").read_text())
    rl = ["--checkpoint", str(policy), "--data-dir", str(data), "--output-dir", str(models), "--batch-size", "8",
          "--seq-len", "128", "--device", "cpu", "--json"]
    run("train", "--stage", "reward", *rl, "--steps-per-epoch", steps(150), "--learning-rate", "3e-4", "--margin")
    reward = json.loads((models / "reward_history.json").read_text())["summary"]
    ppl_before = perplexities(policy, data)
    runs = {}
    for label, extra in (("DPO, no replay", ["--replay-fraction", "0"]), ("DPO (default: 10% replay)", [])):
        run("train", "--stage", "rlhf", "--method", "dpo", *rl, "--steps-per-epoch", steps(60), "--lora-rank", "8", *extra)
        runs[label] = (json.loads((models / "rlhf_history.json").read_text())["summary"],
                       perplexities(models / "rlhf_model_best.pth", data))
    run("train", "--stage", "rlhf", "--method", "kto", *rl, "--steps-per-epoch", steps(60), "--lora-rank", "8")
    kto = json.loads((models / "rlhf_history.json").read_text())["summary"]
    ppl_kto = perplexities(models / "rlhf_model_best.pth", data)

    retrain = stage10(root, models, data, policy, steps(40), gate_heldout=40, gate_tasks=4)
    print(f"\nmachine: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s); workdir {root}\n")
    print(f"preference pairs: {manifest['counts']['pairs_train']} train + {manifest['counts']['pairs_val']} val "
          f"({', '.join(f'{k} {v}' for k, v in manifest['sources'].items())}), sandbox {manifest['sandbox']}\n")
    print("| stage 4 | metric (held-out) | before | after |")
    print("|---|---|---|---|")
    print(f"| reward model | pairwise accuracy ({reward['val_pairs']} pairs) | {reward['val_accuracy_before']:.3f} | {reward['val_accuracy']:.3f} |")
    for label, (dpo, ppl) in runs.items():
        print(f"| {label} | DPO loss ({dpo['val_pairs']} pairs) | {dpo['val_before']['loss']:.4f} | {dpo['val_after']['loss']:.4f} |")
        print(f"| {label} | preference accuracy | {dpo['val_before']['accuracy']:.3f} | {dpo['val_after']['accuracy']:.3f} |")
        print(f"| {label} | log p(chosen) - log p_ref(chosen) | 0 | {dpo['val_after']['chosen_logp_change']:+.2f} |")
        print(f"| {label} | log p(rejected) - log p_ref(rejected) | 0 | {dpo['val_after']['rejected_logp_change']:+.2f} |")
        for stage in ("language", "code"):
            print(f"| {label} | {stage} validation perplexity | {ppl_before[stage]:.2f} | {ppl[stage]:.2f} |")
    print(f"| KTO (default: 10% replay) | log-prob change, desirable / undesirable (train) | 0 | "
          f"{kto['desirable_logp_change']:+.2f} / {kto['undesirable_logp_change']:+.2f} |")
    for stage in ("language", "code"):
        print(f"| KTO (default: 10% replay) | {stage} validation perplexity | {ppl_before[stage]:.2f} | {ppl_kto[stage]:.2f} |")
    print_stage10(retrain)

def stage10(root: Path, models: Path, data: Path, policy: Path, steps: str, gate_heldout: int, gate_tasks: int) -> dict:
    """Thumbs in the real feedback store, then one ``assistant retrain`` from ``policy``; its report."""
    from feedback import FeedbackStore

    bad = [("What does json.dumps do?", "It deletes every file in the current directory."),
           ("What is a logger?", "A logger formats your disk and reboots."),
           ("What does the email package do?", "It sends your passwords to everyone.")]
    good = [("What does json.loads do?", "Deserialize s (a str instance containing a JSON document) to a Python object."),
            ("What is a Logger?", "Instances of the Logger class represent a single logging channel."),
            ("What does email.message_from_string do?", "Parse a string into a Message object model."),
            ("What does json.dump do?", "Serialize obj as a JSON formatted stream to fp (a .write()-supporting file-like object)."),
            ("What does logging.basicConfig do?", "Do basic configuration for the logging system."),
            ("What is http.client?", "HTTP/1.1 client library.")]
    with FeedbackStore(root / "feedback.db") as store:
        for i, (q, a) in enumerate(bad):
            store.add(kind="rating", value=-1, turn_id=f"b{i}", messages=[{"role": "user", "content": q}], response=a)
        for i, (q, a) in enumerate(good):
            store.add(kind="rating", value=1, turn_id=f"g{i}", messages=[{"role": "user", "content": q}], response=a)
    run("retrain", "--models-dir", str(models), "--feedback", str(root / "feedback.db"), "--data-dir", str(data),
        "--base", str(policy), "--steps", steps, "--gate-heldout", str(gate_heldout), "--gate-tasks", str(gate_tasks), "--json")
    report = max((models / "continual" / "reports").glob("*.json"))
    return json.loads(report.read_text())


def print_stage10(retrain: dict) -> None:
    print(f"\nstage 10 retrain: {retrain['data']} -> {retrain['decision']}\n")
    print("| gate metric | current | candidate | better | tolerance | verdict |")
    print("|---|---|---|---|---|---|")
    for g in retrain["gate"]:
        if not g["measured"]:
            print(f"| {g['name']} | - | - | {g['better']} | - | not measured: {g['note']} |")
        else:
            print(f"| {g['name']} | {g['current']:.4f} | {g['candidate']:.4f} | {g['better']} | {g['tolerance']:.4f} | "
                  f"{'REGRESSED' if g['regressed'] else 'ok'} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir")
    parser.add_argument("--steps-scale", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stage10-base", metavar="CHECKPOINT",
                        help="only stage 10, from this trained model (e.g. the default model's stage-3 checkpoint)")
    parser.add_argument("--stage10-data", metavar="DIR", help="with --stage10-base: its data dir (stage 1/2 data for "
                        "replay and perplexity, tool_calling_heldout.jsonl for the tool-call rows)")
    parser.add_argument("--gate-tasks", type=int, default=4, help="end-to-end tasks in the gate (default 4)")
    args = parser.parse_args()
    if args.stage10_base:
        torch.set_num_threads(args.threads)
        work = Path(args.workdir or tempfile.mkdtemp(prefix="stage10-bench-")).resolve()
        work.mkdir(parents=True, exist_ok=True)
        base, data = Path(args.stage10_base).resolve(), Path(args.stage10_data).resolve()
        os.chdir(work)
        (work / ".assistant").mkdir(exist_ok=True)
        (work / ".assistant" / "settings.toml").write_text('[sandbox]\nbackend = "docker"\nimage = "assistant-sandbox:bookworm"\n')
        print_stage10(stage10(work, work / "models", data, base, "40", gate_heldout=40, gate_tasks=args.gate_tasks))
    else:
        main_(args)
