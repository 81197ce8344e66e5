"""``assistant generate``: stream a completion (or one chat reply) from a checkpoint, headless."""

from __future__ import annotations

import argparse
import json
import sys

from assistant.commands._args import non_negative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="generate text from a checkpoint (float or quantized), streaming",
        description="Streams the model's continuation of --prompt to stdout; a status line (tokens, "
        "tokens/s, time to first token, stop reason) goes to stderr. With --chat the prompt is a user "
        "message in the chat format and the reply is parsed for a tool call.",
    )
    p.add_argument("--checkpoint", help="checkpoint to load (default: the global --model)")
    p.add_argument("--adapter", help="a LoRA adapter trained on the checkpoint, merged at load time")
    p.add_argument("--prompt", help="the prompt text (default: read stdin)")
    p.add_argument("--chat", action="store_true", help="treat the prompt as a user message (chat format)")
    p.add_argument("--system", help="with --chat: a system prompt")
    p.add_argument("--tools", action="store_true", help="with --chat: offer the sandbox tools and parse tool calls")
    p.add_argument("--no-constrain", action="store_true",
                   help="with --tools: let tool calls be free text (default: only offered tools, valid JSON)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--temperature", type=float, default=0.7, help="0 for greedy (default 0.7)")
    p.add_argument("--top-k", type=non_negative_int, default=50, help="0 turns it off (default 50)")
    p.add_argument("--top-p", type=positive_float, default=0.95, help="1 turns it off (default 0.95)")
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("--seed", type=int, help="fix the sampling")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="dtype of the float weights")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end instead of streaming")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from common.errors import UsageError

    checkpoint = args.checkpoint or getattr(args, "model", None)
    if not checkpoint:
        raise UsageError("no checkpoint given", "pass --checkpoint PATH")
    prompt = args.prompt if args.prompt is not None else (sys.stdin.read() if not sys.stdin.isatty() else None)
    if prompt is None:
        raise UsageError("no prompt given", "pass --prompt TEXT or pipe it on stdin")
    if args.top_p > 1:
        raise UsageError(f"--top-p {args.top_p} must be at most 1")
    if args.temperature < 0:
        raise UsageError(f"--temperature {args.temperature} must not be negative")

    from assistant.runtime import Finished, GenerationConfig, TextDelta, load, stream, stream_chat

    loaded = load(checkpoint, device=args.device, dtype=args.dtype, adapter=args.adapter)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=args.stop, seed=args.seed,
                              constrain_tool_calls=not args.no_constrain)
    tools = None
    if args.chat:
        if args.tools:
            from sandbox.tools import tool_schemas

            tools = tool_schemas()
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": prompt}]
        events = stream_chat(loaded, messages, config, tools=tools)
    else:
        events = stream(loaded, prompt, config)
    finished = None
    for event in events:
        if isinstance(event, TextDelta) and not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Finished):
            finished = event
    reply = None
    if args.chat:
        from trainer.data.chat_format import parse_reply

        reply = parse_reply(finished.text, tools or [], complete=finished.complete) if args.tools else None
    if args.json:
        out = {"text": finished.text, "stop_reason": finished.stop_reason, "tokens": finished.tokens,
               "prompt_tokens": finished.prompt_tokens, "tokens_per_s": finished.tokens_per_s,
               "first_token_s": finished.first_token_s, "model": loaded.describe()}
        if reply is not None:
            out["reply"] = {"type": type(reply).__name__, **{k: v for k, v in vars(reply).items()}}
        print(json.dumps(out, indent=2, default=str))
        return 0
    sys.stdout.write("\n")
    if reply is not None and type(reply).__name__ != "FinalAnswer":
        print(f"[{type(reply).__name__}] {json.dumps(vars(reply), default=str)}")
    cut = f", prompt cut by {finished.prompt.cut_tokens} tokens" if finished.prompt and finished.prompt.truncated else ""
    print(f"[{finished.tokens} tokens, {finished.tokens_per_s:.1f} tok/s, first token {1000 * finished.first_token_s:.0f} ms, "
          f"stop: {finished.stop_reason}{cut}; {loaded.describe()}]", file=sys.stderr)
    return 0
