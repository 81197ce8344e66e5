"""``assistant model import|export|info``: Hugging Face checkpoints in and out, and what a checkpoint holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("model", help="import/export Hugging Face models, show a checkpoint")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    imp = msub.add_parser(
        "import", help="convert a local Hugging Face model directory into a checkpoint",
        description="Reads config.json, *.safetensors and tokenizer.json (Llama, Mistral, Qwen2, GPT-2, Mamba, "
        "Mixtral). The chat tokens are added to the tokenizer where missing; the embeddings grow once if "
        "the model has no spare rows. Nothing is downloaded.")
    imp.add_argument("directory", help="the Hugging Face model directory")
    imp.add_argument("--output", help="checkpoint to write (default: models/<directory name>.pth)")
    imp.add_argument("--dtype", choices=("keep", "float32", "bfloat16", "float16"), default="keep",
                     help="store the weights in this dtype (default: as in the safetensors)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(handler=run_import)

    exp = msub.add_parser("export", help="write a dense, mamba or moe checkpoint as a Hugging Face model directory")
    exp.add_argument("checkpoint", help="the checkpoint (.pth)")
    exp.add_argument("--output", required=True, help="directory to write (config.json, model.safetensors, tokenizer)")
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(handler=run_export)

    rb = msub.add_parser("rollback", help="make the previously promoted model current again (stage 10)")
    rb.add_argument("--models-dir", help="default: where 'assistant retrain' keeps them ($XDG_DATA_HOME/assistant/models)")
    rb.add_argument("--to", metavar="VERSION", help="a version listed by 'assistant model versions' (default: the previous one)")
    rb.set_defaults(handler=run_rollback)
    ver = msub.add_parser("versions", help="list the promoted-model versions kept on disk (stage 10)")
    ver.add_argument("--models-dir", help="default: where 'assistant retrain' keeps them ($XDG_DATA_HOME/assistant/models)")
    ver.set_defaults(handler=run_versions)

    info = msub.add_parser("info", help="show a checkpoint's architecture, size, origin and quantization report")
    info.add_argument("checkpoint")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=run_info)


def _models_dir(args: argparse.Namespace) -> str:
    from assistant.default_model import user_models_dir

    return args.models_dir or str(user_models_dir())


def run_rollback(args: argparse.Namespace) -> int:
    from trainer.continual.registry import Registry

    registry = Registry(_models_dir(args))
    before, after = registry.rollback(args.to)
    print(f"rolled back: {before['id']} -> {after['id']} ({registry.file(after, 'shipped')})")
    return 0


def run_versions(args: argparse.Namespace) -> int:
    from trainer.continual.registry import Registry

    registry = Registry(_models_dir(args))
    data = registry.load()
    if not data["versions"]:
        print(f"no versions in {registry.root}")
        return 0
    for v in data["versions"]:
        mark = "*" if v["id"] == data.get("current") else " "
        state = "pruned" if v.get("pruned") else ("promoted" if v.get("promoted") else "kept")
        print(f"{mark} {v['id']:<24} parent {v.get('parent') or '-':<24} {state}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from trainer.hf import import_hf

    output = args.output or str(Path("models") / f"{Path(args.directory).resolve().name}.pth")
    summary = import_hf(args.directory, output, dtype=args.dtype)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"imported {summary['architecture']} as {summary['as']} ({summary['parameters'] / 1e6:.1f}M parameters) -> {summary['output']}")
    print(f"tokenizer -> {summary['tokenizer']} (vocabulary {summary['vocab_size']})")
    if summary["added_tokens"]:
        grown = summary["resized_embeddings_from"]
        print(f"chat tokens added: {len(summary['added_tokens'])}"
              + (f" (embeddings resized {grown} -> {summary['vocab_size']})" if grown else " (into the model's spare rows)"))
    if summary["stop_tokens"]:
        print(f"the model's own end tokens stay stop tokens: {' '.join(summary['stop_tokens'])}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from trainer.hf import export_hf

    summary = export_hf(args.checkpoint, args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"exported as {summary['architecture']} -> {summary['output']} ({summary['bytes'] / 2**20:.1f} MiB of weights)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from trainer.checkpoint import load_checkpoint
    from trainer.models import count_parameters

    payload = load_checkpoint(args.checkpoint)
    config = payload["config"]
    quantization = payload.get("quantization")
    parameters = payload.get("parameters")
    if parameters is None and not quantization:
        import torch

        from trainer.models import build_model

        with torch.device("meta"):
            total, active = count_parameters(build_model(config))
        parameters = {"total": total, "active": active}
    info = {
        "checkpoint": args.checkpoint, "kind": payload.get("kind"), "stage": payload.get("stage"), "step": payload.get("step"),
        "architecture": config.architecture, "config": config.to_dict(), "parameters": parameters,
        "source": payload.get("source"), "chat": payload.get("chat"),
        "quantization": {k: v for k, v in quantization.items() if k != "layers"} if quantization else None,
    }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    c = config
    print(f"{args.checkpoint}: {c.architecture}, d_model {c.d_model}, {c.n_layers} layers, vocabulary {c.vocab_size}, "
          f"context {c.max_seq_len}")
    if parameters:
        print(f"parameters: {parameters['total'] / 1e6:.2f}M ({parameters['active'] / 1e6:.2f}M active)")
    print(f"kind: {payload.get('kind') or 'weights'}, stage {payload.get('stage')}, step {payload.get('step')}")
    if payload.get("source"):
        print(f"imported from {payload['source'].get('architecture')} at {payload['source'].get('path')}")
    if quantization:
        from trainer.quantize import format_report

        print("\n".join(format_report(quantization["report"])))
    return 0
