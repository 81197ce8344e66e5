"""``assistant feedback list|stats|export``: read the thumbs-up/down and implicit-signal store."""

from __future__ import annotations

import argparse
import json
import sys
import time

from assistant.commands._args import positive_int


def register(sub) -> None:
    p = sub.add_parser("feedback", help="list, summarise or export the feedback given to the assistant's replies",
                       description="Ratings (thumbs up/down) and implicit signals (rejected approvals, undone turns, "
                       "failed tool results), with their full context, stored in $XDG_DATA_HOME/assistant/feedback.db.")
    p.add_argument("action", choices=("list", "stats", "export"))
    p.add_argument("--db", metavar="PATH", help="feedback database (default: $XDG_DATA_HOME/assistant/feedback.db)")
    p.add_argument("--kind", action="append", choices=("rating", "rejected_approval", "undone_turn", "failed_tool"),
                   help="only these kinds (repeatable)")
    p.add_argument("--since", default="0", metavar="ID|ISO-TIME", help="records after this id or time (default: all)")
    p.add_argument("--limit", type=positive_int, default=50, help="list: newest N (default 50)")
    p.add_argument("--format", choices=("jsonl",), default="jsonl", help="export format (default jsonl)")
    p.add_argument("--output", "-o", metavar="FILE", help="export: write here (atomically) instead of stdout")
    p.add_argument("--json", action="store_true", help="list/stats: JSON output")
    p.set_defaults(handler=run)


def _cursor(text: str):
    from datetime import datetime

    from common.errors import UsageError

    if text.isdigit():
        return int(text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since '{text}' is neither a record id nor an ISO time", "e.g. --since 42 or "
                         "--since 2026-11-24T10:00") from None


def run(args: argparse.Namespace) -> int:
    from feedback import FeedbackStore

    cursor = _cursor(args.since)
    kinds = tuple(args.kind) if args.kind else None
    store = FeedbackStore(args.db, readonly=True)
    try:
        if args.action == "stats":
            stats = store.stats()
            if args.json:
                print(json.dumps(stats))
                return 0
            print(f"{stats['total']} records: {stats['thumbs_up']} thumbs up, {stats['thumbs_down']} thumbs down (latest per turn)")
            for kind, n in stats["by_kind"].items():
                print(f"  {kind:<18} {n}")
            for model, n in stats["by_model"].items():
                print(f"  model {model}: {n}")
            return 0
        if args.action == "export":
            if args.output:
                from common.atomic import atomic_writer

                with atomic_writer(args.output, "w") as out:
                    n = store.export_jsonl(out, cursor, kinds)
                print(f"exported {n} records to {args.output}", file=sys.stderr)
            else:
                store.export_jsonl(sys.stdout, cursor, kinds)
            return 0
        records = store.since(cursor, kinds=kinds)[-args.limit:]
        for record in records:
            if args.json:
                print(json.dumps(record.to_dict(), ensure_ascii=False))
                continue
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created))
            sign = "+1" if record.value > 0 else "-1"
            reason = f"  “{record.reason}”" if record.reason else ""
            print(f"#{record.id}  {when}  {record.kind:<17} {sign}  turn {record.turn_id or '-'}  "
                  f"{record.model_id or '-'}{reason}")
        if not records and not args.json:
            print("no feedback yet")
        return 0
    finally:
        store.close()
