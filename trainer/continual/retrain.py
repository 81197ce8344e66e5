"""Stage 10: ``assistant retrain`` — learn from new feedback, gate the result, promote it or not.

One run:
1. take the lock (a second run exits at once), clean what an interrupted run left;
2. read the feedback newer than the current model's; below ``if_new_feedback`` ratings, stop;
3. thumbs become KTO examples, corrections preference pairs (DPO rides along); some are held out;
4. train a LoRA adapter on the current model with a replay sample of the earlier stages' data
   (the learning rate re-warmed, then decayed); merge it, quantize the result as it would ship;
5. gate the quantized candidate against the current quantized model (``trainer.continual.gate``);
6. promote atomically (or refuse), keep the last N versions, write the run's report.

Everything a run writes before promotion lives in ``continual/runs/<run>.partial``; the promoted
model is only ever replaced by rewriting ``registry.json`` atomically, so a crash, a kill -9 or a
sleeping laptop leaves the current model exactly as it was and the next run starts clean.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.atomic import atomic_write_text
from trainer import TrainerError
from trainer.continual.feedback import is_signal, read_feedback, to_training_records
from trainer.continual.gate import GateSettings, format_metric, run_gate
from trainer.continual.registry import DEFAULT_KEEP, Registry
from trainer.data.dataset import replay_tokens


@dataclass
class RetrainSettings:
    models_dir: str = "models"
    feedback: str = ""  # the feedback export (JSONL)
    data_dir: str = "data/processed"  # earlier stages' data: replay and the perplexity gate
    base: str | None = None  # the first run registers this checkpoint as the current model
    if_new_feedback: int = 1  # do nothing below this many new ratings
    steps: int = 40
    batch_size: int = 8
    learning_rate: float | None = None
    warmup_steps: int | None = None
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = "all-linear"
    beta: float = 0.1
    replay_fraction: float = 0.1
    quantization: str = "int8"
    keep: int = DEFAULT_KEEP
    max_len: int = 256
    seed: int = 1337
    device: str = "cpu"
    candidate_adapter: str | None = None  # gate and promote this adapter instead of training one
    gate: GateSettings = field(default_factory=GateSettings)


class RetrainBusy(TrainerError):
    pass


class RetrainLock:
    """An exclusive, non-blocking flock: released by the kernel when the process dies (kill -9 too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = None

    def __enter__(self) -> RetrainLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.handle.close()
            raise RetrainBusy(f"another retrain is running ({holder})", "wait for it to finish; runs never overlap") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def register_base(registry: Registry, checkpoint: str | Path, quantization: str, log: Callable[[str], None]) -> dict:
    """Make ``checkpoint`` version 0: copied (a quantized one: dequantized for training), quantized as it ships, promoted."""
    from trainer.checkpoint import load_checkpoint
    from trainer.quantize import run_quantization

    payload = load_checkpoint(checkpoint)
    version_id = "base-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    staging = registry.new_run_dir(version_id)
    shipped = staging / f"model_{quantization}.pth"
    log(f"registering {checkpoint} as the first promoted model ({quantization})")
    if payload.get("quantization"):
        # only the quantized model exists (the shipped default): train on its dequantized weights,
        # and keep shipping the file itself while it is the current model
        _save_dequantized(payload, staging / "model.pth")
        if payload["quantization"].get("mode") == quantization:
            shutil.copyfile(checkpoint, shipped)
            return registry.add_version(staging, _base_entry(version_id, checkpoint, quantization), promote=True)
    else:
        shutil.copyfile(checkpoint, staging / "model.pth")
    run_quantization(staging / "model.pth", quantization, output=shipped, data_dir=None, decode_tokens=4, device="cpu")
    return registry.add_version(staging, _base_entry(version_id, checkpoint, quantization), promote=True)


def _base_entry(version_id: str, checkpoint: str | Path, quantization: str) -> dict:
    return {"id": version_id, "parent": None, "source": str(checkpoint), "float": "model.pth",
            "shipped": f"model_{quantization}.pth", "adapter": None, "feedback_until": None, "created": time.time()}


def _save_dequantized(payload: dict, path: Path) -> None:
    from trainer.checkpoint import save_checkpoint
    from trainer.quantize import dequantized_payload

    float_payload = dequantized_payload(payload)
    extra = {k: v for k, v in payload.items() if k in ("stage", "step", "parameters", "source", "chat")}
    save_checkpoint(path, model_state=float_payload["model"], model_config=payload["config"], tokenizer_json=payload["tokenizer_json"],
                    tokenizer_hash=payload.get("tokenizer_hash"), kind="weights", dequantized_from=float_payload["dequantized_from"],
                    **extra)


def _split_feedback(pairs: list[dict], labelled: list[dict]) -> tuple[list, list, list, list, bool]:
    """Hold out about every 5th item (by a stable hash of its id) when there are at least 10; with
    fewer, every rating is needed for training and the gate measures the trained items (and says so)."""
    if len(pairs) + len(labelled) < 10:
        return pairs, labelled, pairs, labelled, False

    def held(record: dict) -> bool:
        key = str(record.get("feedback_id") or json.dumps(record, sort_keys=True))
        return zlib.crc32(key.encode()) % 5 == 0

    tp, hp = [p for p in pairs if not held(p)], [p for p in pairs if held(p)]
    tl, hl = [r for r in labelled if not held(r)], [r for r in labelled if held(r)]
    if not (hp or hl) or not (tp or tl):
        return pairs, labelled, pairs, labelled, False
    return tp, tl, hp, hl, True


def write_report(registry: Registry, report: dict) -> Path:
    path = registry.reports_dir / f"{report['run']}.json"
    registry.reports_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1, default=str))
    return path


def history(models_dir: str | Path) -> list[dict]:
    registry = Registry(models_dir)
    if not registry.reports_dir.exists():
        return []
    reports = []
    for path in sorted(registry.reports_dir.glob("*.json")):
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except ValueError:
            continue
    return sorted(reports, key=lambda r: r.get("started", 0))


def retrain(settings: RetrainSettings, log: Callable[[str], None] | None = None,
            extra_metrics: Callable | None = None) -> dict:
    """One stage-10 run; returns its report (also written under ``continual/reports``)."""
    log = log or (lambda line: None)
    registry = Registry(settings.models_dir)
    registry.root.mkdir(parents=True, exist_ok=True)
    with RetrainLock(registry.lock_path):
        removed = registry.clean_stale()
        if removed:
            log(f"cleaned {len(removed)} leftovers of an interrupted run")
        if registry.current() is None:
            if not settings.base:
                raise TrainerError("there is no promoted model yet", "pass --base models/code_model_best.pth on the first run")
            register_base(registry, settings.base, settings.quantization, log)
        if settings.keep != registry.load().get("keep"):
            registry.set_keep(settings.keep)
        return _run(registry, settings, log, extra_metrics)


def _run(registry: Registry, s: RetrainSettings, log: Callable[[str], None], extra_metrics) -> dict:
    from trainer.checkpoint import load_checkpoint
    from trainer.lora import LoRAConfig
    from trainer.quantize import run_quantization
    from trainer.rlhf import data as pdata
    from trainer.rlhf.train import PreferenceConfig, train_kto

    current = registry.current()
    run_id = _new_run_id()
    report: dict = {"run": run_id, "started": time.time(), "current": current["id"], "settings": asdict(s)}
    records = [r for r in read_feedback(s.feedback, since=current.get("feedback_until")) if is_signal(r)] if s.feedback else []
    report["new_feedback"] = len(records)
    needed = max(1, s.if_new_feedback)
    if len(records) < needed and s.candidate_adapter is None:
        report.update(decision="skipped", reason=f"{len(records)} new ratings, fewer than {needed}", finished=time.time())
        write_report(registry, report)
        log(f"nothing to do: {report['reason']}")
        return report
    pairs, labelled = to_training_records(records)
    train_p, train_l, held_p, held_l, held_out = _split_feedback(pairs, labelled)
    report["data"] = {"ratings": len(labelled), "thumbs_up": sum(bool(r["label"]) for r in labelled),
                      "thumbs_down": sum(not r["label"] for r in labelled), "corrections": len(pairs),
                      "train_items": len(train_p) + len(train_l), "held_out_items": len(held_p) + len(held_l) if held_out else 0}
    staging = registry.new_run_dir(run_id)
    current_float = registry.file(current, "float")
    base_payload = load_checkpoint(current_float)
    replay, replay_sources = replay_tokens(s.data_dir, base_payload.get("tokenizer_hash"))
    del base_payload
    report["data"]["replay_sources"] = replay_sources
    report["data"]["replay_fraction"] = s.replay_fraction if replay else 0.0

    if s.candidate_adapter:
        log(f"gating the given adapter {s.candidate_adapter} (no training)")
        report["training"] = {"method": "given adapter", "adapter": s.candidate_adapter}
        _merge_given_adapter(current_float, Path(s.candidate_adapter), staging)
    else:
        labelled_train = train_l or pdata.pairs_to_labelled(train_p)
        if not labelled_train:
            raise TrainerError("no usable feedback in the new records", "rate some answers with thumbs up or down")
        cfg = PreferenceConfig(method="kto", checkpoint=str(current_float), output_dir=str(staging), name="candidate",
                               labelled=labelled_train, pairs=train_p, steps=s.steps, batch_size=s.batch_size,
                               learning_rate=s.learning_rate, warmup_steps=s.warmup_steps, beta=s.beta,
                               lora=LoRAConfig(rank=s.lora_rank, alpha=s.lora_alpha, targets=s.lora_targets),
                               replay_tokens=replay or None, replay_fraction=s.replay_fraction if replay else 0.0,
                               max_len=s.max_len, seed=s.seed, device=s.device, log_interval=max(1, s.steps // 4))
        log(f"training an adapter on {len(labelled_train)} rated examples and {len(train_p)} corrections "
            f"({s.steps} steps, replay {cfg.replay_fraction:.0%})")
        summary = train_kto(cfg, log)
        report["training"] = {k: v for k, v in summary.items() if k not in ("checkpoint", "adapter")}
        report["training"]["losses"] = [round(h["loss"], 5) for h in json.loads(
            (staging / "candidate_history.json").read_text())["steps"]]
    os.replace(staging / "candidate_model_best.pth", staging / "model.pth")
    os.replace(staging / "candidate_adapter.pt", staging / "adapter.pt")
    shipped = f"model_{s.quantization}.pth"
    log(f"quantizing the candidate ({s.quantization}) as it would ship")
    run_quantization(staging / "model.pth", s.quantization, output=staging / shipped, data_dir=None, decode_tokens=4, device="cpu")

    log("gate: the quantized candidate against the current model")
    gate_labelled, gate_pairs = (held_l, held_p) if held_out else (labelled, pairs)
    gate = run_gate(registry.file(current, "shipped"), staging / shipped, data_dir=s.data_dir, labelled=gate_labelled,
                    pairs=gate_pairs, held_out=held_out, settings=s.gate, extra_metrics=extra_metrics, log=log)
    report["gate"] = gate.table()
    report["held_out"] = held_out
    feedback_until = max((float(r.get("created", 0)) for r in records), default=current.get("feedback_until"))
    if gate.passed:
        entry = {"id": run_id, "parent": current["id"], "float": "model.pth", "shipped": shipped, "adapter": "adapter.pt",
                 "feedback_until": feedback_until, "created": time.time()}
        registry.add_version(staging, entry, promote=True)
        report.update(decision="promoted", promoted=run_id)
        log(f"promoted {run_id} (was {current['id']})")
    else:
        shutil.rmtree(staging, ignore_errors=True)
        report.update(decision="refused", reason="regressed: " + ", ".join(gate.regressions))
        log(f"refused: {report['reason']}; {current['id']} stays")
    report["finished"] = time.time()
    report["report_path"] = str(write_report(registry, report))
    return report


def _merge_given_adapter(base_float: Path, adapter: Path, staging: Path) -> None:
    """Stage an externally trained adapter as this run's candidate (same files as a trained one)."""
    from trainer.checkpoint import load_checkpoint, model_from_payload, save_checkpoint
    from trainer.lora import load_adapter

    payload = load_checkpoint(base_float)
    model = model_from_payload(payload).float()
    load_adapter(model, adapter, base_sha256=payload.get("weights_sha256"), merge=True)
    shutil.copyfile(adapter, staging / "candidate_adapter.pt")
    save_checkpoint(staging / "candidate_model_best.pth", model_state=model.state_dict(), model_config=model.config,
                    tokenizer_json=payload["tokenizer_json"], tokenizer_hash=payload.get("tokenizer_hash"), kind="weights",
                    stage="continual", parent_weights_sha256=payload.get("weights_sha256"))


def format_history(reports: list[dict]) -> list[str]:
    lines = [f"{'run':<22} {'decision':<9} {'new':>4}  {'model before':<22} details"]
    for r in reports:
        when = r["run"]
        detail = r.get("reason") or (f"-> {r.get('promoted')}" if r.get("promoted") else "")
        if r.get("gate"):
            ppl = [g for g in r["gate"] if g["name"].startswith("perplexity") and g["measured"]]
            if ppl:
                detail += " | " + ", ".join(f"{g['name'].split(':')[1]} loss {g['current']:.3f}->{g['candidate']:.3f}" for g in ppl)
        lines.append(f"{when:<22} {r.get('decision', '?'):<9} {r.get('new_feedback', 0):>4}  {r.get('current', ''):<22} {detail}")
    return lines


__all__ = ["RetrainBusy", "RetrainSettings", "format_history", "format_metric", "history", "retrain"]
