"""``assistant eval``: measure checkpoints (float or quantized) side by side, as a table and JSON."""

from __future__ import annotations

import argparse

from assistant.commands._args import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate models: perplexity, held-out tool calls, end-to-end agent tasks",
        description="Evaluate one or more checkpoints (e.g. the fp32 and the int8 model) side by side: "
        "perplexity on the language and code validation sets, tool-call metrics on the stage-3 held-out "
        "conversations, and end-to-end agent tasks over the fixture projects in tests/eval_fixtures, "
        "each checked by a programmatic oracle, through the real agent loop and sandbox.",
    )
    p.add_argument("models", nargs="*", metavar="CHECKPOINT", help="checkpoints to compare (default: the default model)")
    p.add_argument("--data-dir", default="data/processed", help="prepared data: *_val.npy and tool_calling_heldout.jsonl")
    p.add_argument("--heldout", help="held-out conversations (default: <data-dir>/tool_calling_heldout.jsonl)")
    p.add_argument("--heldout-limit", type=positive_int, help="evaluate only the first N held-out conversations")
    p.add_argument("--tasks-limit", type=positive_int, help="run only the first N end-to-end tasks")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end agent tasks")
    p.add_argument("--sandbox-backend", choices=("auto", "docker", "bwrap"), help="default: the [sandbox] setting")
    p.add_argument("--sandbox-image", help="docker image (default: the [sandbox] setting)")
    p.add_argument("--copy-bias", type=float, metavar="B",
                   help="logit bonus for tool-call arguments copied from the request (default: the runtime's, 3; 0: off)")
    p.add_argument("--answer-copy-bias", type=float, metavar="B",
                   help="logit bonus for answer text quoting the tool results (default: the runtime's, 3; 0: off)")
    p.add_argument("--json", metavar="PATH", help="also write the full report (every row) as JSON here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from assistant.evaluation.run import evaluate, format_table, write_json
    from assistant.default_model import default_model_path
    from assistant.settings import load_settings, section
    from common.errors import UsageError
    from sandbox.limits import SandboxSettings

    settings_doc = load_settings(Path.cwd())
    models = args.models or [str(args.model or default_model_path(settings_doc))]
    for model in models:
        if not Path(model).is_file():
            raise UsageError(f"checkpoint not found: {model}", "pass a .pth file (e.g. models/default/model_int8.pth)")
    data_dir = Path(args.data_dir)
    heldout = Path(args.heldout) if args.heldout else data_dir / "tool_calling_heldout.jsonl"
    if not heldout.exists():
        if args.heldout:
            raise UsageError(f"held-out set not found: {heldout}", "run 'assistant data prepare --stage tool_calling'")
        print(f"note: no held-out set at {heldout}; tool-call metrics skipped", file=sys.stderr)
        heldout = None
    settings = section(settings_doc, "sandbox", SandboxSettings)
    changes = {k: v for k, v in (("backend", args.sandbox_backend), ("image", args.sandbox_image)) if v}
    settings = dataclasses.replace(settings, **changes)
    report = evaluate(models, data_dir=data_dir, heldout_path=heldout, heldout_limit=args.heldout_limit,
                      tasks_limit=args.tasks_limit, sandbox_settings=settings, run_e2e=not args.no_e2e,
                      log=lambda line: print(line, file=sys.stderr, flush=True),
                      decoding={k: v for k, v in (("copy_bias", args.copy_bias), ("answer_copy_bias", args.answer_copy_bias))
                                if v is not None})
    print(format_table(report["models"]))
    if args.json:
        write_json(report, Path(args.json))
        print(f"report -> {args.json}", file=sys.stderr)
    return 0
