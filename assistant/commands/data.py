"""``assistant data``: tokenizer training, corpus preparation, downloads."""

from __future__ import annotations

import argparse
import itertools

from assistant.commands._args import fraction, positive_int


def register(sub) -> None:
    p = sub.add_parser("data", help="train the tokenizer and prepare training data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    tok = dsub.add_parser("tokenizer", help="train the byte-level BPE tokenizer (special tokens reserved)")
    tok.add_argument("--input", nargs="+", required=True, metavar="PATH", help="text files/directories (.txt, .jsonl, .md)")
    tok.add_argument("--code-input", nargs="*", default=[], metavar="PATH", help="code directories (shell scripts, --glob)")
    tok.add_argument("--glob", action="append", default=[], help="code file pattern, e.g. '*.py' (repeatable)")
    tok.add_argument("--vocab-size", type=positive_int, default=32000)
    tok.add_argument("--max-documents", type=positive_int, help="train on at most this many documents")
    tok.add_argument("--output", default="data/tokenizer/tokenizer.json")
    tok.set_defaults(handler=run_tokenizer)

    prep = dsub.add_parser("prepare", help="tokenize a corpus into <stage>_train.npy / <stage>_val.npy; "
                           "--stage rlhf builds checked preference pairs")
    prep.add_argument("--stage", choices=("language", "code", "tool_calling", "rlhf"), required=True)
    prep.add_argument("--input", nargs="+", metavar="PATH", help="files or directories (language and code stages)")
    prep.add_argument("--tokenizer", default="data/tokenizer/tokenizer.json")
    prep.add_argument("--output-dir", default="data/processed")
    prep.add_argument("--val-fraction", type=fraction, help="held-out share (default 0.05; rlhf 0.2)")
    prep.add_argument("--seed", type=int, default=1337)
    prep.add_argument("--text-field", default="text", help="field of .jsonl records holding the text")
    prep.add_argument("--glob", action="append", default=[], help="code stage: also take files matching this (repeatable)")
    prep.add_argument("--no-shell", action="store_true", help="code stage: do not collect shell scripts")
    prep.add_argument("--max-file-bytes", type=positive_int, default=1 << 20, help="code stage: skip larger files")
    prep.add_argument("--tasks", help="rlhf: JSONL of {name, request, solution, tests} (default: the built-in tasks)")
    prep.add_argument("--max-tasks", type=positive_int, help="rlhf: use only the first N tasks")
    prep.add_argument("--sources", default="tests,analysis,tool_call,feedback",
                      help="rlhf: which pair sources (default: tests,analysis,tool_call,feedback)")
    prep.add_argument("--feedback", metavar="PATH", help="rlhf: the feedback store (.db) or its JSONL export: adds pairs and thumbs")
    tc = prep.add_argument_group("tool_calling stage (conversations with real tool results, run in the sandbox)")
    tc.add_argument("--num-examples", type=positive_int, default=2000, help="training conversations (default 2000)")
    tc.add_argument("--heldout-examples", type=positive_int, default=200, help="held-out conversations for 'assistant eval'")
    tc.add_argument("--sandbox-backend", choices=("auto", "docker", "bwrap", "none"),
                    help="where the calls run (default: the [sandbox] setting; 'none' runs on the host, refused unless named)")
    tc.add_argument("--sandbox-image", help="docker image (default: the [sandbox] setting)")
    prep.set_defaults(handler=run_prepare)

    dl = dsub.add_parser("download", help="download a public corpus (needs the internet)")
    dl.add_argument("corpus", choices=("tinystories",))
    dl.add_argument("--output-dir", default="data/raw")
    dl.set_defaults(handler=run_download)


def _code_documents(inputs, report, args):
    from trainer.data.corpora import iter_code_documents

    return iter_code_documents(inputs, report, globs=args.glob, include_shell=not getattr(args, "no_shell", False),
                               max_bytes=getattr(args, "max_file_bytes", 1 << 20))


def run_tokenizer(args: argparse.Namespace) -> int:
    from trainer.data.corpora import CorpusReport, iter_text_documents
    from trainer.data.tokenizer import save_tokenizer, train_tokenizer

    report = CorpusReport()
    docs = iter_text_documents(args.input, report)
    if args.code_input:
        docs = itertools.chain(docs, _code_documents(args.code_input, report, args))
    if args.max_documents:
        docs = itertools.islice(docs, args.max_documents)
    counted = _Counter(docs)
    tokenizer = train_tokenizer(counted, vocab_size=args.vocab_size)
    if counted.count == 0:
        from trainer import TrainerError

        raise TrainerError("the tokenizer corpus is empty", "check --input: no readable documents were found")
    path = save_tokenizer(tokenizer, args.output)
    print(f"tokenizer: {tokenizer.vocab_size} tokens from {counted.count} documents -> {path} (hash {tokenizer.hash[:12]})")
    return 0


def run_prepare_rlhf(args: argparse.Namespace) -> int:
    from pathlib import Path

    from assistant.commands.sandbox import load_sandbox_settings
    from trainer.rlhf.prepare import prepare_rlhf

    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    manifest = prepare_rlhf(args.output_dir, tasks_path=args.tasks, sources=sources, feedback=args.feedback,
                            sandbox_settings=load_sandbox_settings(Path.cwd()), val_fraction=args.val_fraction or 0.2,
                            seed=args.seed, max_tasks=args.max_tasks, log=print)
    by_source = ", ".join(f"{k} {v}" for k, v in manifest["sources"].items())
    c = manifest["counts"]
    print(f"rlhf: {c['pairs_train']} train + {c['pairs_val']} val preference pairs ({by_source}); "
          f"{manifest['labelled']} rated examples; sandbox {manifest['sandbox'] or 'not used'} -> {args.output_dir}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    if args.stage == "rlhf":
        return run_prepare_rlhf(args)
    from trainer.data.corpora import CorpusReport, iter_text_documents
    from trainer.data.prepare import prepare_stage
    from trainer.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    if args.stage == "tool_calling":
        return _prepare_tool_calling(args, tokenizer)
    if not args.input:
        from common.errors import UsageError

        raise UsageError(f"--input is required for the {args.stage} stage", "pass files or directories")
    report = CorpusReport()
    if args.stage == "code":
        docs = _code_documents(args.input, report, args)
    else:
        docs = iter_text_documents(args.input, report, text_field=args.text_field)
    manifest = prepare_stage(args.stage, docs, report, tokenizer, args.output_dir, args.val_fraction or 0.05, args.seed)
    skipped = ", ".join(f"{k} {v}" for k, v in manifest["skipped"].items() if v) or "none"
    print(
        f"{args.stage}: {manifest['train_tokens']:,} train + {manifest['val_tokens']:,} val tokens from "
        f"{len(manifest['sources'])} files ({manifest['documents']['train'] + manifest['documents']['val']} documents; "
        f"skipped: {skipped}) -> {args.output_dir}"
    )
    return 0


def _prepare_tool_calling(args: argparse.Namespace, tokenizer) -> int:
    import dataclasses
    import sys
    from pathlib import Path

    from assistant.agent.context import SYSTEM_PROMPT, repo_summary
    from assistant.settings import load_settings, section
    from sandbox.limits import SandboxSettings
    from trainer.data.tool_calling import ToolRunner, prepare_tool_calling

    settings = section(load_settings(Path.cwd()), "sandbox", SandboxSettings)
    changes = {k: v for k, v in (("backend", args.sandbox_backend), ("image", args.sandbox_image)) if v}
    settings = dataclasses.replace(settings, **changes)
    if settings.backend == "auto":
        from sandbox.factory import probe

        chosen = probe(settings).chosen
        if chosen == "none":
            from sandbox import SandboxError

            raise SandboxError("no sandbox here (no Docker engine, bubblewrap does not work)",
                               "start dockerd, install bubblewrap, or pass --sandbox-backend none to run the calls on the host")
        settings = dataclasses.replace(settings, backend=chosen)
    print(f"tool_calling: running every call in the {settings.backend} sandbox", file=sys.stderr)
    runner = ToolRunner(settings)
    try:
        manifest = prepare_tool_calling(args.output_dir, tokenizer, runner, num_examples=args.num_examples,
                                        heldout_examples=args.heldout_examples, val_fraction=args.val_fraction or 0.05,
                                        seed=args.seed, log=lambda line: print(line, file=sys.stderr),
                                        system_prompt=lambda root: f"{SYSTEM_PROMPT}\n\nRepository summary:\n{repo_summary(root)}")
    finally:
        runner.close()
    s = manifest["splits"]
    print(f"tool_calling: {s['train']['conversations']} train + {s['val']['conversations']} val + "
          f"{manifest['heldout_conversations']} held-out conversations; {manifest['train_tokens']:,} train tokens "
          f"({s['train']['target_tokens']:,} targets); {manifest['tool_runs']} real tool runs -> {args.output_dir}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from trainer.data.download import download_tinystories

    for path in download_tinystories(args.output_dir):
        print(f"downloaded {path}")
    return 0


class _Counter:
    """Counts documents as the tokenizer trainer consumes them."""

    def __init__(self, iterable) -> None:
        self._it = iter(iterable)
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self):
        value = next(self._it)
        self.count += 1
        return value
