"""The promotion gate: a candidate ships only if it is not worse than the current model beyond noise.

Both models are measured as they would ship (the quantized files), on the same items, so every
metric is a *paired* comparison: per item (a validation window, a rated answer) the candidate's
score minus the current model's. A metric regresses when the mean paired difference is worse than
``z`` standard errors plus a small floor (the noise of a handful of items, and of quantization).

Metrics:
- ``perplexity:<stage>``: next-token loss on fixed windows of the language and code validation sets;
- ``feedback``: on held-out rated items, the per-token log-probability of thumbs-up answers
  (higher is better) and of thumbs-down answers (lower is better), and the margin of corrections
  over the answers they replaced;
- ``tool_call`` / ``end_to_end``: measured by the evaluation suite (``assistant eval``), passed in
  by the application as ``extra_metrics``; otherwise listed as not measured.
Thumbs are one signal among several: a candidate that pleases the rater but loses perplexity is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data.dataset import eval_offsets, windows
from trainer.rlhf import data as pdata


@dataclass
class GateSettings:
    z: float = 2.0  # standard errors of the paired difference counted as noise
    perplexity_floor: float = 0.01  # relative loss increase always tolerated (1%)
    feedback_floor: float = 0.05  # nats per token always tolerated on the feedback items
    windows: int = 24
    seq_len: int = 128


@dataclass
class MetricResult:
    """One row of the gate table; ``tolerance``: how much worse the candidate may be (noise)."""

    name: str
    current: float | None
    candidate: float | None
    better: str  # "lower" | "higher"
    items: int = 0
    tolerance: float | None = None
    regressed: bool = False
    measured: bool = True
    note: str = ""

    def row(self) -> dict:
        return asdict(self)


@dataclass
class GateResult:
    metrics: list[MetricResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(m.regressed for m in self.metrics)

    @property
    def regressions(self) -> list[str]:
        return [m.name for m in self.metrics if m.regressed]

    def table(self) -> list[dict]:
        return [m.row() for m in self.metrics]


def load_for_eval(path: str | Path):
    """(model, tokenizer, payload) of a float or quantized checkpoint, on the CPU in float32 matmuls."""
    from trainer.checkpoint import load_model
    from trainer.quantize import set_compute_dtype

    model, tokenizer, payload = load_model(path)
    model.float()
    set_compute_dtype(model, torch.float32)
    return model.eval(), tokenizer, payload


def paired(name: str, cur: np.ndarray, cand: np.ndarray, better: str, floor: float, z: float, note: str = "") -> MetricResult:
    diff = cand - cur if better == "lower" else cur - cand  # positive: the candidate is worse
    n = len(diff)
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    tolerance = z * se + floor
    return MetricResult(name, float(cur.mean()), float(cand.mean()), better, n, tolerance, bool(diff.mean() > tolerance),
                        note=note)


@torch.no_grad()
def window_losses(model, tokens: np.ndarray, seq_len: int, count: int) -> np.ndarray:
    seq = min(seq_len, int(tokens.size) - 2, model.config.max_seq_len)
    offsets = eval_offsets(int(tokens.size), seq, count)
    out = []
    for start in range(0, len(offsets), 8):
        x, y = windows(tokens, offsets[start : start + 8], seq)
        logits, _ = model(x)
        losses = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        out.extend(losses.view(x.size(0), -1).mean(1).tolist())
    return np.asarray(out)


def perplexity_metrics(current, candidate, data_dir: str | Path | None, tokenizer_hash: str | None,
                       settings: GateSettings) -> list[MetricResult]:
    from trainer.data.dataset import open_tokens
    from trainer.data.prepare import read_manifest

    results = []
    for stage in ("language", "code"):
        path = Path(data_dir) / f"{stage}_val.npy" if data_dir else None
        if path is None or not path.exists():
            results.append(MetricResult(f"perplexity:{stage}", None, None, "lower", measured=False,
                                        note=f"no validation data ({path or 'no --data-dir'})"))
            continue
        manifest = read_manifest(Path(data_dir), stage)
        if tokenizer_hash and manifest.get("tokenizer_hash") not in (None, tokenizer_hash):
            results.append(MetricResult(f"perplexity:{stage}", None, None, "lower", measured=False,
                                        note="validation data prepared with another tokenizer"))
            continue
        tokens = np.asarray(open_tokens(path))
        cur = window_losses(current, tokens, settings.seq_len, settings.windows)
        cand = window_losses(candidate, tokens, settings.seq_len, settings.windows)
        r = paired(f"perplexity:{stage}", cur, cand, "lower", settings.perplexity_floor * float(cur.mean()), settings.z)
        r.note = f"ppl {math.exp(min(r.current, 50)):.2f} -> {math.exp(min(r.candidate, 50)):.2f}"
        results.append(r)
    return results


def _per_token_logprobs(model, tokenizer, items: list[tuple[list, dict]], max_len: int) -> np.ndarray:
    from trainer.rlhf.logprobs import batched_sequence_logprobs

    encoded = [pdata.encode(prompt, reply, tokenizer, max_len) for prompt, reply in items]
    return batched_sequence_logprobs(model, [e.ids for e in encoded], [e.mask for e in encoded], average=True).numpy()


def feedback_metrics(current, candidate, tokenizer, labelled: list[dict], pairs: list[dict], held_out: bool,
                     settings: GateSettings, max_len: int = 256) -> list[MetricResult]:
    note = "held-out items" if held_out else "too few ratings to hold any out: measured on the trained items"
    results = []
    for label, name, better in ((True, "feedback:thumbs_up_logp", "higher"), (False, "feedback:thumbs_down_logp", "lower")):
        items = [(r["prompt"], r["completion"]) for r in labelled if bool(r["label"]) == label]
        if not items:
            results.append(MetricResult(name, None, None, better, measured=False, note="no such ratings"))
            continue
        cur = _per_token_logprobs(current, tokenizer, items, max_len)
        cand = _per_token_logprobs(candidate, tokenizer, items, max_len)
        results.append(paired(name, cur, cand, better, settings.feedback_floor, settings.z, note))
    if pairs:
        chosen = [(p["prompt"], p["chosen"]) for p in pairs]
        rejected = [(p["prompt"], p["rejected"]) for p in pairs]
        cur = _per_token_logprobs(current, tokenizer, chosen, max_len) - _per_token_logprobs(current, tokenizer, rejected, max_len)
        cand = _per_token_logprobs(candidate, tokenizer, chosen, max_len) - _per_token_logprobs(candidate, tokenizer, rejected, max_len)
        results.append(paired("feedback:correction_margin", cur, cand, "higher", settings.feedback_floor, settings.z, note))
    return results


UNMEASURED_EVAL = ("tool_call:validity", "tool_call:right_tool", "end_to_end:success")


def run_gate(current_path: Path, candidate_path: Path, *, data_dir: str | Path | None, labelled: list[dict],
             pairs: list[dict], held_out: bool, settings: GateSettings | None = None,
             extra_metrics: Callable[[Path, Path], list[dict]] | None = None,
             log: Callable[[str], None] | None = None) -> GateResult:
    """``extra_metrics(current, candidate)``: rows of further paired metrics (the evaluation suite's
    tool-call validity, right-tool rate, end-to-end success), supplied by the application."""
    settings = settings or GateSettings()
    log = log or (lambda line: None)
    current, tokenizer, cur_payload = load_for_eval(current_path)
    candidate, _, _ = load_for_eval(candidate_path)
    result = GateResult()
    result.metrics += perplexity_metrics(current, candidate, data_dir, cur_payload.get("tokenizer_hash"), settings)
    result.metrics += feedback_metrics(current, candidate, tokenizer, labelled, pairs, held_out, settings)
    if extra_metrics is not None:
        result.metrics += [MetricResult(**row) for row in extra_metrics(current_path, candidate_path)]
    else:
        result.metrics += [MetricResult(name, None, None, "higher", measured=False,
                                        note="evaluation suite not installed on this branch") for name in UNMEASURED_EVAL]
    for m in result.metrics:
        log(format_metric(m))
    return result


def format_metric(m: MetricResult | dict[str, Any]) -> str:
    m = m if isinstance(m, dict) else m.row()
    if not m["measured"]:
        return f"  {m['name']:<28} not measured ({m['note']})"
    verdict = "REGRESSED" if m["regressed"] else "ok"
    return (f"  {m['name']:<28} current {m['current']:.4f} | candidate {m['candidate']:.4f} | {m['better']} is better | "
            f"tolerance {m['tolerance']:.4f} over {m['items']} items | {verdict}" + (f" | {m['note']}" if m["note"] else ""))
