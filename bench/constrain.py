"""Tool-call constraint benchmark: parse rate and per-token cost, constrained vs unconstrained.

A model (default: the shipped one, ``models/default/model_int8.pth``) answers a fixed set of
requests that each call for a tool, with every tool offered, greedy and sampled (temperature 0.7,
seeds 0..2), once with the constraint and once without, interleaved. Reported per mode: replies that
attempt a call, how they parse (``parse_reply``), decode tokens/s; for the constrained runs the
constraint's own time per token (its hooks minus the sampling they call), per phase (before the
call, the name header, the arguments), the vocabulary scans, extra draws, and the one-time
vocabulary precomputation.

    .venv/bin/python bench/constrain.py [--checkpoint PATH] [--seeds 3] [--max-new-tokens 160]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

REQUESTS = [
    "Run the tests in tests/test_app.py",
    "Run the tests that match 'login'.",
    "What is 2**20? Compute it with Python.",
    "Print the first 10 Fibonacci numbers using Python.",
    "List the files in the src directory.",
    "Show me the first 40 lines of app/main.py",
    "Read setup.py",
    "Find where parse_config is defined in the project.",
    "Search the code for TODO comments.",
    "How do I use json.dumps? Look it up in the docs.",
    "Check app/utils.py for lint and security problems.",
    "Why does this crash? def f(x): return 1/x\nf(0)",
    "Run `ls -la` in the shell.",
    "What Python version is installed? Use bash.",
    "Search the docs for argparse subcommands.",
    "Find the function that handles user login in the codebase.",
]


class Timed:
    """Wraps ToolCallConstraint to time its hooks by phase (and the sampling they call)."""

    def __init__(self):
        self.time = Counter()
        self.tokens = Counter()
        self.sample_time = Counter()
        self.draws = Counter()
        self.scans = 0
        self.scan_time = 0.0

    def cls(self):
        from assistant.runtime.constrain import ToolCallConstraint

        stats = self

        class TimedConstraint(ToolCallConstraint):
            def allowed_mask(self, device):
                started = time.perf_counter()
                mask = super().allowed_mask(device)
                if self.arguments is not None and not self.arguments.done:
                    stats.scans += 1
                    stats.scan_time += time.perf_counter() - started
                return mask

            def choose(self, logits, sample):
                phase = ("before" if not self.active else "header" if self.arguments is None
                         else "end" if self.arguments.done else "arguments") if not self.disabled else "after"

                def timed_sample(raw):
                    t = time.perf_counter()
                    token = sample(raw)
                    stats.sample_time[phase] += time.perf_counter() - t
                    stats.draws[phase] += 1
                    return token

                started = time.perf_counter()
                token = super().choose(logits, timed_sample)
                self.advance_phase = phase
                stats.time[phase] += time.perf_counter() - started
                stats.tokens[phase] += 1
                return token

            def advance(self, token):
                started = time.perf_counter()
                super().advance(token)
                stats.time[getattr(self, "advance_phase", "before")] += time.perf_counter() - started

        return TimedConstraint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(REPO / "models/default/model_int8.pth"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from assistant.runtime import GenerationConfig, constrain, load, stream_chat
    from sandbox.tools import tool_schemas
    from trainer.data.chat_format import TOOL_CALL, ToolCall, parse_reply

    if not Path(args.checkpoint).exists():
        print(f"bench/constrain.py: no checkpoint at {args.checkpoint} (pass --checkpoint)", file=sys.stderr)
        return 1
    loaded = load(args.checkpoint, device="cpu")
    tools = tool_schemas()
    started = time.perf_counter()
    constrain.VocabBytes(loaded.tokenizer, loaded.config.vocab_size)
    precompute_ms = (time.perf_counter() - started) * 1000

    timed = Timed()
    original = constrain.ToolCallConstraint
    constrain.ToolCallConstraint = timed.cls()
    settings = [{"temperature": 0.0}] + [{"temperature": 0.7, "seed": s} for s in range(args.seeds)]
    results = {True: Counter(), False: Counter()}
    rates = {True: [], False: []}
    try:
        for request in REQUESTS:
            messages = [{"role": "user", "content": request}]
            for sampling in settings:
                for on in (False, True):
                    config = GenerationConfig(max_new_tokens=args.max_new_tokens, constrain_tool_calls=on, **sampling)
                    *_, end = stream_chat(loaded, messages, config, tools=tools)
                    rates[on].append(end.tokens_per_s)
                    results[on]["replies"] += 1
                    if TOOL_CALL not in end.text:
                        results[on]["no call"] += 1
                        continue
                    results[on]["attempts"] += 1
                    reply = parse_reply(end.text, tools, complete=end.complete)
                    results[on]["ok" if isinstance(reply, ToolCall) else reply.kind] += 1
                    results[on]["notes"] += len(end.notes)
    finally:
        constrain.ToolCallConstraint = original

    kinds = ["replies", "attempts", "ok", "unknown_tool", "bad_json", "bad_shape", "invalid_arguments", "truncated", "notes"]
    print(f"# {args.checkpoint}: {loaded.describe()}, vocab {loaded.config.vocab_size}, {len(tools)} tools offered")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores (shared), 1 torch thread")
    print()
    print("| mode | " + " | ".join(kinds) + " | call parses | median tokens/s |")
    print("|---|" + "---|" * (len(kinds) + 2))
    for on in (False, True):
        r = results[on]
        share = r["ok"] / r["attempts"] if r["attempts"] else 0.0
        print(f"| {'constrained' if on else 'unconstrained'} | " + " | ".join(str(r[k]) for k in kinds)
              + f" | {share:.0%} | {statistics.median(rates[on]):.0f} |")
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"\nconstrained / unconstrained median tokens/s: {ratio:.2f}")
    print(f"vocabulary bytes precomputed once per tokenizer: {precompute_ms:.0f} ms")
    print("\n| phase | tokens | constraint's own time per token (ms) | extra draws |")
    print("|---|---|---|---|")
    for phase in ("before", "header", "arguments", "end"):
        n = timed.tokens[phase]
        if not n:
            continue
        own = (timed.time[phase] - timed.sample_time[phase]) / n * 1000
        print(f"| {phase} | {n} | {own:.3f} | {timed.draws[phase] - n} |")
    scan_ms = timed.scan_time / timed.scans * 1000 if timed.scans else 0.0
    print(f"\nvocabulary scans in the arguments: {timed.scans} ({scan_ms:.1f} ms each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
