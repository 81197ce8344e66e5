"""``assistant eval``: perplexity, held-out tool-call metrics and end-to-end agent success, for one
or more checkpoints (e.g. the fp32 and the int8 model) side by side, as a table and JSON."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.evaluation.tasks import EVAL_SET_VERSION


def perplexities(loaded, data_dir: Path, seq_len: int = 256, windows: int = 32) -> dict[str, Any]:
    """Validation perplexity on the language and code sets prepared in ``data_dir`` (same windows for every model)."""
    from trainer.data.dataset import open_tokens
    from trainer.data.prepare import read_manifest
    from trainer.evaluate import perplexity

    out: dict[str, Any] = {}
    for stage in ("language", "code"):
        path = data_dir / f"{stage}_val.npy"
        if not path.exists():
            out[stage] = {"skipped": f"no {path}"}
            continue
        manifest = read_manifest(data_dir, stage)
        if manifest.get("tokenizer_hash") != loaded.tokenizer.hash:
            out[stage] = {"skipped": "prepared with another tokenizer than the model's"}
            continue
        tokens = open_tokens(path, loaded.tokenizer.vocab_size)
        out[stage] = perplexity(loaded.model, tokens, seq_len=seq_len, windows_count=windows)
    return out


def evaluate_model(path: str, *, data_dir: Path, heldout: list[dict] | None, heldout_limit: int | None,
                   tasks_limit: int | None, sandbox_settings: Any, run_e2e: bool = True,
                   log: Callable[[str], None] = lambda s: None, decoding: dict[str, float] | None = None) -> dict[str, Any]:
    from assistant.evaluation.heldout import evaluate_heldout
    from assistant.evaluation.tasks import run_tasks
    from assistant.runtime import load

    started = time.time()
    loaded = load(path)
    log(f"{path}: {loaded.describe()}")
    report: dict[str, Any] = {"model": str(path), "description": loaded.describe(),
                              "quantization": (loaded.quantization or {}).get("mode", "float"),
                              "file_mb": round(Path(path).stat().st_size / 2**20, 2)}
    report["perplexity"] = perplexities(loaded, data_dir)
    if heldout is not None:
        report["heldout"] = evaluate_heldout(loaded, heldout, heldout_limit, log=log, decoding=decoding)
    if run_e2e:
        report["e2e"] = run_tasks(loaded, sandbox_settings, tasks_limit, log=log, agent_overrides=decoding)
    if decoding:
        report["decoding"] = decoding
    report["seconds"] = round(time.time() - started, 1)
    return report


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ppl(entry: dict) -> str:
    return f"{entry['perplexity']:.2f}" if "perplexity" in entry else "n/a"


def format_table(reports: list[dict]) -> str:
    """One column per model: the markdown table the model card holds."""
    rows: list[tuple[str, Callable[[dict], str]]] = [
        ("weights", lambda r: r["quantization"]),
        ("file size", lambda r: f"{r['file_mb']} MB"),
        ("perplexity, language val", lambda r: _ppl(r["perplexity"].get("language", {}))),
        ("perplexity, code val", lambda r: _ppl(r["perplexity"].get("code", {}))),
    ]
    if any("heldout" in r for r in reports):
        rows += [
            ("held-out conversations", lambda r: str(r["heldout"]["examples"])),
            ("valid tool-call syntax", lambda r: _pct(r["heldout"]["valid_syntax"])),
            ("right tool (all requests)", lambda r: _pct(r["heldout"]["right_tool"])),
            ("right tool (call expected)", lambda r: _pct(r["heldout"]["right_tool_when_call_expected"])),
            ("no call when none fits", lambda r: _pct(r["heldout"]["no_tool_when_none_expected"])),
            ("arguments exact", lambda r: _pct(r["heldout"]["exact_args"])),
            ("arguments partial", lambda r: _pct(r["heldout"]["partial_args"])),
            ("final answer states key fact", lambda r: _pct(r["heldout"]["key_fact_stated"])),
        ]
    if any("e2e" in r for r in reports):
        rows += [("end-to-end agent tasks", lambda r: f"{r['e2e']['passed']}/{r['e2e']['tasks']} ({_pct(r['e2e']['success_rate'])})")]
    header = "| metric | " + " | ".join(Path(r["model"]).name for r in reports) + " |"
    lines = [header, "|---" * (len(reports) + 1) + "|"]
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(r) if _has(r, name) else "n/a" for r in reports) + " |")
    return "\n".join(lines)


def _has(report: dict, row: str) -> bool:
    if row.startswith(("held-out", "valid", "right", "no call", "arguments", "final")):
        return "heldout" in report
    if row.startswith("end-to-end"):
        return "e2e" in report
    return True


def evaluate(models: list[str], *, data_dir: Path, heldout_path: Path | None, heldout_limit: int | None,
             tasks_limit: int | None, sandbox_settings: Any, run_e2e: bool = True,
             log: Callable[[str], None] = lambda s: None, decoding: dict[str, float] | None = None) -> dict[str, Any]:
    from trainer.data.tool_calling import read_examples

    heldout = read_examples(heldout_path) if heldout_path is not None else None
    reports = [evaluate_model(m, data_dir=data_dir, heldout=heldout, heldout_limit=heldout_limit, tasks_limit=tasks_limit,
                              sandbox_settings=sandbox_settings, run_e2e=run_e2e, log=log, decoding=decoding)
               for m in models]
    return {"eval_set_version": EVAL_SET_VERSION, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "heldout": str(heldout_path) if heldout_path else None, "models": reports}


def write_json(report: dict, path: Path) -> None:
    from common.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(report, indent=1, default=str))
