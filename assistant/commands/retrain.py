"""``assistant retrain`` (stage 10) and ``assistant schedule install|remove`` (the nightly job)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from assistant.commands._args import non_negative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "retrain", help="learn from new feedback: train an adapter, gate it, promote it or keep the current model",
        description="Reads the ratings newer than the promoted model, trains a LoRA adapter (KTO on thumbs, DPO on "
        "corrections, with a replay of earlier stages' data), quantizes the candidate and promotes it only if "
        "no gate metric regresses beyond noise. Runs never overlap (a lock), and a killed run leaves the "
        "promoted model untouched.")
    p.add_argument("--models-dir", help="where promoted versions live (default: $XDG_DATA_HOME/assistant/models, "
                   "where the assistant looks for the promoted model)")
    p.add_argument("--feedback", help="the feedback store (.db) or a JSONL export of it "
                   "(default: the store, $XDG_DATA_HOME/assistant/feedback.db)")
    p.add_argument("--data-dir", default="data/processed", help="earlier stages' data: replay and perplexity gate")
    p.add_argument("--base", help="first run only: the checkpoint to start from (default: the model the assistant "
                   "opens, e.g. the shipped models/default/model_int8.pth; a quantized one is dequantized to train)")
    p.add_argument("--if-new-feedback", type=non_negative_int, default=1, metavar="N",
                   help="do nothing below N new ratings (default 1)")
    p.add_argument("--history", action="store_true", help="list past runs (decision, data, gate) and exit")
    p.add_argument("--steps", type=positive_int, default=40)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--learning-rate", type=positive_float, help="peak LR, re-warmed each run (default 5e-4 for LoRA)")
    p.add_argument("--lora-rank", type=positive_int, default=8)
    p.add_argument("--lora-alpha", type=positive_float, default=16.0)
    p.add_argument("--lora-targets", default="all-linear")
    p.add_argument("--beta", type=positive_float, default=0.1)
    p.add_argument("--replay-fraction", type=float, default=0.1, help="share of earlier-stage data per step (default 0.1)")
    p.add_argument("--quantization", choices=("int8", "int4"), default="int8", help="what ships (default int8)")
    p.add_argument("--keep", type=positive_int, default=5, help="promoted versions kept on disk (default 5)")
    p.add_argument("--candidate-adapter", metavar="PATH", help="gate and promote this adapter instead of training one")
    p.add_argument("--gate-z", type=positive_float, default=2.0, help="noise band in standard errors (default 2)")
    p.add_argument("--gate-heldout", type=non_negative_int, default=40, metavar="N",
                   help="held-out tool-call conversations in the gate (default 40; 0 turns it off)")
    p.add_argument("--gate-tasks", type=non_negative_int, default=8, metavar="N",
                   help="end-to-end agent tasks in the gate (default 8; 0 turns it off)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_retrain)

    s = sub.add_parser("schedule", help="install or remove the nightly retrain job (launchd, systemd timer or cron)")
    ssub = s.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    inst = ssub.add_parser("install", help="run 'assistant retrain --if-new-feedback N' every night in this project")
    inst.add_argument("--min-feedback", type=positive_int, default=10, help="N: new ratings needed (default 10)")
    inst.add_argument("--at", default="03:00", help="time of day HH:MM (default 03:00)")
    inst.add_argument("--scheduler", choices=("auto", "launchd", "systemd", "cron"), default="auto")
    inst.set_defaults(handler=run_schedule_install)
    rem = ssub.add_parser("remove", help="take the nightly job away")
    rem.add_argument("--scheduler", choices=("auto", "launchd", "systemd", "cron"), default="auto")
    rem.set_defaults(handler=run_schedule_remove)


def _eval_suite_metrics(args: argparse.Namespace):
    """The evaluation suite's paired gate metrics (tool calls, end-to-end tasks in the sandbox)."""
    from assistant.commands.sandbox import load_sandbox_settings
    from assistant.retrain_gate import make_eval_metrics

    return make_eval_metrics(Path(args.data_dir), load_sandbox_settings(Path.cwd()), args.gate_heldout, args.gate_tasks,
                             z=args.gate_z, log=_print)


def _claim_queued_requests() -> list[Path]:
    """Take every request that ``/retrain`` queued (assistant/retrain_queue.py); each is taken once."""
    from assistant.retrain_queue import claim, pending

    return [path for path in (claim(request) for request in pending()) if path is not None]


def _default_base() -> str:
    """The model the assistant would open (settings, else the shipped default): stage 10 starts from it."""
    from assistant.default_model import choose_model
    from assistant.settings import load_settings

    return str(choose_model(None, load_settings(Path.cwd())).path)


def run_retrain(args: argparse.Namespace) -> int:
    from assistant.default_model import user_models_dir
    from trainer.continual.gate import GateSettings
    from trainer.continual.retrain import RetrainSettings, format_history, history, retrain

    args.models_dir = args.models_dir or str(user_models_dir())

    if args.history:
        reports = history(args.models_dir)
        if args.json:
            print(json.dumps(reports, indent=1, default=str))
        elif not reports:
            print(f"no retrain runs yet in {args.models_dir}/continual")
        else:
            print("\n".join(format_history(reports)))
        return 0
    if not 0 <= args.replay_fraction < 1:
        from common.errors import UsageError

        raise UsageError(f"--replay-fraction {args.replay_fraction} must be in [0, 1)")
    from feedback import default_feedback_path

    if args.feedback and not Path(args.feedback).is_file():
        from common.errors import UsageError

        raise UsageError(f"feedback not found: {args.feedback}", "pass the store (.db) or an export from 'assistant feedback export'")
    if_new_feedback = args.if_new_feedback
    claimed = _claim_queued_requests()
    if claimed:  # the user asked for this run (/retrain): any new rating is enough
        if_new_feedback = min(if_new_feedback, 1)
        _print(f"taking {len(claimed)} queued /retrain request(s)")
    settings = RetrainSettings(
        models_dir=args.models_dir, feedback=args.feedback or str(default_feedback_path()), data_dir=args.data_dir,
        base=args.base or _default_base(),
        if_new_feedback=if_new_feedback, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_targets=args.lora_targets, beta=args.beta,
        replay_fraction=args.replay_fraction, quantization=args.quantization, keep=args.keep,
        candidate_adapter=args.candidate_adapter, seed=args.seed, gate=GateSettings(z=args.gate_z),
    )
    report = retrain(settings, log=(lambda line: None) if args.json else _print, extra_metrics=_eval_suite_metrics(args))
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    elif report["decision"] != "skipped":
        print(f"{report['decision']}: report {report.get('report_path')}")
    return 0


def run_schedule_install(args: argparse.Namespace) -> int:
    from assistant.schedule import Job, install
    from common.errors import UsageError

    try:
        hour, minute = (int(x) for x in args.at.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise UsageError(f"--at {args.at} is not a time of day", "use HH:MM, e.g. 03:00") from None
    result = install(Job(project=Path.cwd(), min_feedback=args.min_feedback, hour=hour, minute=minute), args.scheduler)
    print(f"nightly retrain at {hour:02d}:{minute:02d} via {result['backend']}: {', '.join(result['paths'])}")
    return 0


def run_schedule_remove(args: argparse.Namespace) -> int:
    from assistant.schedule import remove

    result = remove(args.scheduler)
    print(f"removed the nightly retrain ({result['backend']})" if result["removed"]
          else f"no nightly retrain was installed ({result['backend']})")
    return 0


def _print(line: str) -> None:
    print(line, flush=True)
