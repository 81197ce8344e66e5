"""End-to-end training runs at nano size: learning, stage 2, resume after SIGKILL, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from assistant.cli import main
from tests.trainer.conftest import train_args
from trainer.checkpoint import load_checkpoint
from trainer.loop import apply_update, make_optimizer
from trainer.models import ARCHITECTURES, build_model, preset_config


def history(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_language_then_code_stage_for_each_architecture(prepared, tmp_path, arch):
    out = tmp_path / "models"
    assert main(train_args(prepared, out, "--architecture", arch, "--steps-per-epoch", "200",
                           "--eval-interval", "100", "--learning-rate", "3e-3", "--warmup-steps", "20")) == 0
    prefix = "language_model" if arch == "dense" else f"language_{arch}_model"
    record = history(out / f"{prefix}_history.json")
    initial, final = record["evals"][0]["val_loss"], record["evals"][-1]["val_loss"]
    assert record["evals"][0]["step"] == 0 and record["evals"][-1]["step"] == 200
    assert final < initial - 1.5, (initial, final)  # clearly learned (initial is about ln 1024 = 6.9)
    assert len(record["steps"]) == 200 and record["skipped_updates"] == 0
    if arch == "moe":
        shares = record["steps"][-1]["expert_share"]
        assert len(shares) == 8 and abs(sum(shares) - 1) < 1e-3

    best = out / f"{prefix}_best.pth"
    assert load_checkpoint(best)["config"].architecture == arch
    assert main(train_args(prepared, out, "--stage", "code", "--checkpoint", str(best), "--steps-per-epoch", "30",
                           "--eval-interval", "30", "--learning-rate", "1e-3", stage="code")) == 0
    code_prefix = prefix.replace("language", "code")
    code = history(out / f"{code_prefix}_history.json")
    assert code["model_config"] == record["model_config"]  # same model, continued
    assert code["evals"][-1]["val_loss"] < code["evals"][0]["val_loss"]


def _run_cli(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "assistant", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def test_resume_after_sigkill_reproduces_the_uninterrupted_losses(prepared, tmp_path):
    common = ["--architecture", "dense", "--steps-per-epoch", "60", "--eval-interval", "20",
              "--checkpoint-interval", "5", "--log-interval", "1", "--learning-rate", "2e-3", "--seed", "7"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full = _run_cli(train_args(prepared, tmp_path / "full", *common), env)
    assert full.wait() == 0, full.stdout.read()

    victim = _run_cli(train_args(prepared, tmp_path / "killed", *common), env)
    for line in victim.stdout:
        if line.startswith("step 23 |"):
            victim.send_signal(signal.SIGKILL)
            break
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    last = load_checkpoint(tmp_path / "killed" / "language_model_last.pth")
    assert 5 <= last["step"] < 60  # killed mid-run, with a checkpoint to resume from

    resumed = _run_cli(train_args(prepared, tmp_path / "killed", *common, "--resume"), env)
    output = resumed.stdout.read()
    assert resumed.wait() == 0, output
    a = [s["loss"] for s in history(tmp_path / "full" / "language_model_history.json")["steps"]]
    b = [s["loss"] for s in history(tmp_path / "killed" / "language_model_history.json")["steps"]]
    assert len(a) == len(b) == 60
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-6


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(prepared, tmp_path):
    common = ["--architecture", "dense", "--steps-per-epoch", "12", "--eval-interval", "12",
              "--learning-rate", "2e-3", "--seed", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = train_args(prepared, tmp_path / "single", *common)
    single[single.index("--batch-size") + 1] = "4"
    one = _run_cli(single, env)
    assert one.wait() == 0, one.stdout.read()
    ddp_args = train_args(prepared, tmp_path / "ddp", *common)
    ddp_args[ddp_args.index("--batch-size") + 1] = "2"
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "assistant", *ddp_args], capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-2000:]
    a = history(tmp_path / "single" / "language_model_history.json")
    b = history(tmp_path / "ddp" / "language_model_history.json")
    assert [round(s["loss"], 4) for s in a["steps"]] == [round(s["loss"], 4) for s in b["steps"]]
    wa = load_checkpoint(tmp_path / "single" / "language_model_last.pth")["model"]
    wb = load_checkpoint(tmp_path / "ddp" / "language_model_last.pth")["model"]
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < 1e-4


def test_non_finite_gradient_skips_the_update_and_keeps_the_weights():
    model = build_model(preset_config("nano", "dense", vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=32))
    optimizer = make_optimizer(model.parameters(), 0.1, 0.1, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    norm, skipped = apply_update(model, optimizer, None, 1.0)
    assert skipped and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    _, skipped = apply_update(model, optimizer, None, 1.0)
    assert not skipped and not torch.equal(before["embed.weight"], model.state_dict()["embed.weight"])


def test_the_trainer_optimizer_is_fused_adamw_with_decay_on_matrices_only():
    def build():
        torch.manual_seed(0)
        return build_model(preset_config("nano", "dense", vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=32))

    fused_model, plain_model = build(), build()
    fused = make_optimizer(fused_model.parameters(), 1e-2, 0.1, torch.device("cpu"))
    assert fused.defaults["fused"]
    decayed = {id(p) for g in fused.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for p in fused_model.parameters() if p.dim() >= 2}
    plain = torch.optim.AdamW([{"params": [p for p in plain_model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in plain_model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                              lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    x = torch.randint(0, 64, (2, 9))
    for model, optimizer in ((fused_model, fused), (plain_model, plain)):
        for _ in range(3):
            logits, _ = model(x[:, :-1])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 64), x[:, 1:].reshape(-1)).backward()
            optimizer.step()
            optimizer.zero_grad()
    for (name, a), b in zip(fused_model.state_dict().items(), plain_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("use_scaler", [False, True])
def test_mixed_precision_paths_train_and_save_fp32_weights(prepared, tmp_path, monkeypatch, use_scaler):
    """This CPU has no bf16 matrix units, so --use-amp would stay fp32: force the autocast (and
    grad-scaler) path the trainer takes on GPUs to run here too."""
    import trainer.loop as loop

    monkeypatch.setattr(loop, "amp_settings", lambda device, requested: (torch.bfloat16, use_scaler) if requested else (None, False))
    out = tmp_path / "amp"
    assert main(train_args(prepared, out, "--architecture", "moe", "--steps-per-epoch", "6", "--eval-interval", "6",
                           "--use-amp", "--learning-rate", "2e-3")) == 0
    record = history(out / "language_moe_model_history.json")
    assert all(s["loss"] == s["loss"] for s in record["steps"]) and record["skipped_updates"] == 0
    assert record["evals"][-1]["val_loss"] < record["evals"][0]["val_loss"]
    weights = load_checkpoint(out / "language_moe_model_last.pth")["model"]
    assert all(t.dtype == torch.float32 for t in weights.values())
