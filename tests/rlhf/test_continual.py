"""Stage 10 end to end: thumbs on a nano model trained by the project -> retrain -> gate -> promote,
a forced regression refused, kill -9 in the middle of a run, rollback, history, the lock."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from assistant.cli import main
from feedback import FeedbackStore
from trainer.continual.registry import Registry, promoted_model

BAD_PROMPT = [{"role": "user", "content": "What does the json module do?"}]
BAD_ANSWER = {"content": "It deletes every file in the current directory and then reboots the machine."}
GOOD = [
    ([{"role": "user", "content": "What does json.dumps do?"}], {"content": "Serialize obj to a JSON formatted str."}),
    ([{"role": "user", "content": "What does json.loads do?"}],
     {"content": "Deserialize s (a str instance containing a JSON document) to a Python object."}),
    ([{"role": "user", "content": "What is a logger?"}],
     {"content": "Instances of the Logger class represent a single logging channel."}),
    ([{"role": "user", "content": "What does the email package do?"}],
     {"content": "A package for parsing, handling, and generating email messages."}),
]


def _rate(store: FeedbackStore, i: int, prompt, response: dict, value: int, kind: str = "rating") -> None:
    """What the app stores when the user rates a turn (the real feedback store)."""
    store.add(kind=kind, value=value, session_id="s1", turn_id=f"t{i}", messages=prompt, response=response["content"],
              model_id="language_model_best.pth@200")


def _feedback(path: Path) -> None:
    with FeedbackStore(path) as store:
        _rate(store, 0, BAD_PROMPT, {"content": "It is a module."}, +1)
        _rate(store, 0, BAD_PROMPT, BAD_ANSWER, -1)  # the same turn re-rated: the newest rating counts
        for i, (p, r) in enumerate(GOOD, 1):
            _rate(store, i, p, r, +1)


def _logp(checkpoint: Path, prompt, reply) -> float:
    from trainer.continual.gate import load_for_eval
    from trainer.rlhf.data import encode
    from trainer.rlhf.logprobs import batched_sequence_logprobs

    model, tokenizer, _ = load_for_eval(checkpoint)
    enc = encode(prompt, reply, tokenizer, 256)
    return float(batched_sequence_logprobs(model, [enc.ids], [enc.mask])[0])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _retrain_args(models: Path, feedback: Path, prepared, *extra: str) -> list[str]:
    return ["retrain", "--models-dir", str(models), "--feedback", str(feedback), "--data-dir", str(prepared["data"]),
            "--steps", "30", "--batch-size", "8", "--gate-tasks", "2", *extra]


@pytest.fixture(scope="module")
def promoted(trained_nano, prepared, tmp_path_factory):
    """A first retrain: base registered, thumbs applied, candidate gated and promoted."""
    root = tmp_path_factory.mktemp("continual")
    models, feedback = root / "models", root / "feedback.db"
    _feedback(feedback)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_retrain_args(models, feedback, prepared, "--base", str(trained_nano), "--json")) == 0
    finally:
        torch.set_num_threads(before)
    return {"root": root, "models": models, "feedback": feedback}


def test_retrain_lowers_the_bad_answer_and_the_gate_holds(promoted, capsys):
    registry = Registry(promoted["models"])
    data = registry.load()
    assert len(data["versions"]) == 2
    base, current = data["versions"][0], registry.current()
    assert current["parent"] == base["id"]
    base_shipped, new_shipped = registry.file(base, "shipped"), registry.file(current, "shipped")
    assert promoted_model(promoted["models"]) == new_shipped
    bad_before, bad_after = _logp(base_shipped, BAD_PROMPT, BAD_ANSWER), _logp(new_shipped, BAD_PROMPT, BAD_ANSWER)
    assert bad_after < bad_before - 1.0, (bad_before, bad_after)
    good_before = sum(_logp(base_shipped, p, r) for p, r in GOOD)
    good_after = sum(_logp(new_shipped, p, r) for p, r in GOOD)
    assert good_after > good_before
    report = json.loads(next((promoted["models"] / "continual" / "reports").glob("*.json")).read_text())
    assert report["decision"] == "promoted"
    assert report["data"]["thumbs_down"] == 1 and report["data"]["thumbs_up"] == 4
    assert report["data"]["replay_sources"] and report["data"]["replay_fraction"] == 0.1
    gate = {row["name"]: row for row in report["gate"]}
    for name in ("perplexity:language", "perplexity:code", "feedback:thumbs_down_logp", "feedback:thumbs_up_logp",
                 "end_to_end:success"):
        assert gate[name]["measured"] and not gate[name]["regressed"], gate[name]
    losses = report["training"]["losses"]
    assert len(losses) == 30 and min(losses[-5:]) < losses[0]
    # the runtime loads exactly the promoted, quantized artifact
    from assistant.runtime import load

    loaded = load(promoted["models"], device="cpu")  # a models directory means its promoted model
    assert loaded.path == new_shipped and loaded.quantization["mode"] == "int8"


def test_no_new_feedback_means_nothing_happens(promoted, prepared, capsys):
    registry_bytes = (promoted["models"] / "continual" / "registry.json").read_bytes()
    assert main(_retrain_args(promoted["models"], promoted["feedback"], prepared, "--if-new-feedback", "3")) == 0
    assert "nothing to do: 0 new ratings" in capsys.readouterr().out
    assert (promoted["models"] / "continual" / "registry.json").read_bytes() == registry_bytes


def test_a_queued_retrain_request_lowers_the_threshold_and_is_taken_once(promoted, prepared, capsys):
    from assistant.retrain_queue import pending, request_retrain

    request_retrain(promoted["models"].parent, source="tui")
    assert main(_retrain_args(promoted["models"], promoted["feedback"], prepared, "--if-new-feedback", "3")) == 0
    out = capsys.readouterr().out
    assert "taking 1 queued /retrain request(s)" in out
    assert "fewer than 1" in out  # the user's request needs only one new rating (there is none here)
    assert pending() == []


def test_a_regressing_candidate_is_refused_and_the_current_model_stays(promoted, prepared, tmp_path, capsys):
    from trainer.checkpoint import load_checkpoint, model_from_payload
    from trainer.lora import LoRAConfig, apply_lora, lora_parameters, save_adapter

    registry = Registry(promoted["models"])
    current = registry.current()
    payload = load_checkpoint(registry.file(current, "float"))
    model = model_from_payload(payload).float()
    apply_lora(model, LoRAConfig(rank=4, alpha=8))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a corrupted adapter: large random low-rank updates everywhere
        for p in lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    bad = save_adapter(tmp_path / "corrupted.pt", model, payload["weights_sha256"])
    shipped = registry.file(current, "shipped")
    digest = _digest(shipped)
    assert main(_retrain_args(promoted["models"], promoted["feedback"], prepared, "--candidate-adapter", str(bad))) == 0
    out = capsys.readouterr().out
    assert "refused: regressed: perplexity:language" in out
    assert "REGRESSED" in out and "end_to_end:success" in out
    assert registry.current()["id"] == current["id"] and _digest(shipped) == digest
    assert not list((promoted["models"] / "continual" / "versions").glob("*.partial"))
    assert main(["retrain", "--models-dir", str(promoted["models"]), "--history"]) == 0
    listing = capsys.readouterr().out
    assert "promoted" in listing and "refused" in listing and "skipped" in listing


def test_kill_9_during_retrain_leaves_the_promoted_model_intact(promoted, prepared, tmp_path):
    registry = Registry(promoted["models"])
    registry_bytes = registry.path.read_bytes()
    shipped = registry.file(registry.current(), "shipped")
    digest = _digest(shipped)
    feedback = tmp_path / "more.db"
    feedback.write_bytes(promoted["feedback"].read_bytes())
    with FeedbackStore(feedback) as store:
        _rate(store, 100, BAD_PROMPT, {"content": "It formats the disk."}, -1, kind="undone_turn")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "assistant", *_retrain_args(promoted["models"], feedback, prepared),
                             "--steps", "5000"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # wait until training has begun
            if line.startswith("training an adapter"):
                break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(1.5)  # well inside the training steps
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(registry.runs_dir.glob("*.partial"))  # the kill left a half-made run behind ...
    assert registry.path.read_bytes() == registry_bytes and _digest(shipped) == digest  # ... and nothing else
    from trainer.checkpoint import load_model

    load_model(shipped)
    # the next run gets the lock (the kernel released it) and cleans up
    assert main(_retrain_args(promoted["models"], feedback, prepared, "--if-new-feedback", "50")) == 0
    assert not list(registry.runs_dir.glob("*.partial"))


def test_lock_refuses_an_overlapping_run(promoted, prepared, capsys):
    from trainer.continual.retrain import RetrainLock

    registry = Registry(promoted["models"])
    with RetrainLock(registry.lock_path):
        assert main(_retrain_args(promoted["models"], promoted["feedback"], prepared)) == 1
    assert "another retrain is running (pid" in capsys.readouterr().err


def test_rollback_switches_back_and_forth(promoted, capsys):
    registry = Registry(promoted["models"])
    new = registry.current()["id"]
    assert main(["model", "rollback", "--models-dir", str(promoted["models"])]) == 0
    base = registry.current()
    assert base["id"] != new and base["parent"] is None
    assert promoted_model(promoted["models"]) == registry.file(base, "shipped")
    assert main(["model", "rollback", "--models-dir", str(promoted["models"]), "--to", new]) == 0
    assert registry.current()["id"] == new
    assert main(["model", "rollback", "--models-dir", str(promoted["models"]), "--to", "nope"]) == 1
    assert "no model version 'nope'" in capsys.readouterr().err


def test_only_the_last_n_promoted_versions_are_kept(tmp_path):
    registry = Registry(tmp_path)
    for i in range(4):
        staged = registry.new_run_dir(f"v{i}")
        (staged / "model_int8.pth").write_bytes(b"x")
        registry.add_version(staged, {"id": f"v{i}", "shipped": "model_int8.pth", "float": "model.pth"}, promote=True)
        registry.set_keep(2)
        time.sleep(0.01)
    kept = sorted(p.name for p in registry.versions_dir.iterdir())
    assert kept == ["v2", "v3"] and registry.current()["id"] == "v3"
    assert registry.rollback()[1]["id"] == "v2"
    with pytest.raises(Exception, match="no earlier promoted model"):
        registry.rollback()  # v0 and v1 were pruned
    assert registry.rollback("v3")[1]["id"] == "v3"


def test_the_loop_runs_on_the_shipped_model_with_no_flags(tmp_path, monkeypatch):
    """What a user gets: thumbs in the default feedback store, then a bare ``assistant retrain`` (as the
    nightly job runs it). Only the shipped int8 model exists, so it is registered as the base (its
    dequantized weights to train, the file itself to ship), and the promoted model lands in the user's
    data folder, where the assistant looks for it; a rollback returns to the shipped model."""
    from assistant.default_model import DEFAULT_MODEL, choose_model, user_models_dir
    from feedback import default_feedback_path
    from trainer.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)  # a project without prepared data: no replay, perplexity not measured
    _feedback(default_feedback_path())
    assert choose_model(None, {}).source == "default"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["retrain", "--steps", "12", "--gate-tasks", "0", "--gate-heldout", "0", "--json"]) == 0
    finally:
        torch.set_num_threads(before)
    registry = Registry(user_models_dir())
    base, current = registry.load()["versions"][0], registry.current()
    assert base["source"] == str(DEFAULT_MODEL) and _digest(registry.file(base, "shipped")) == _digest(DEFAULT_MODEL)
    float_base = load_checkpoint(registry.file(base, "float"))
    assert not float_base.get("quantization") and float_base["dequantized_from"] == "int8"
    # the float base holds exactly the shipped int8 weights, dequantized (codes x scales)
    from trainer.checkpoint import model_from_payload
    from trainer.quantize import Int8Linear

    shipped = model_from_payload(load_checkpoint(DEFAULT_MODEL))
    weights = float_base["model"]
    layers = [(name, m) for name, m in shipped.named_modules() if isinstance(m, Int8Linear) and name != "lm_head"]
    assert layers and all(torch.equal(weights[f"{name}.weight"], m.dequantized(torch.float32)) for name, m in layers)
    assert torch.equal(weights["embed.weight"], shipped.embed.weight)  # a tied head is the float embedding again

    assert current["parent"] == base["id"]  # the thumbs were learned and the gate passed
    assert _logp(registry.file(current, "shipped"), BAD_PROMPT, BAD_ANSWER) < _logp(DEFAULT_MODEL, BAD_PROMPT, BAD_ANSWER)
    choice = choose_model(None, {})
    assert (choice.path, choice.source) == (registry.file(current, "shipped"), "promoted")
    assert choose_model(None, {"model": {"path": "/s.pth"}}).source == "settings"  # the user's own choice still wins
    assert main(["model", "rollback"]) == 0
    assert choose_model(None, {}).path == DEFAULT_MODEL  # back on the base: the shipped file itself
