"""Stage 4 end to end at nano size: checked preference data, the reward model, DPO, KTO, PPO, GRPO."""

from __future__ import annotations

import json
import math

import pytest
import torch

from assistant.cli import main
from trainer.models import build_model, preset_config
from trainer.rlhf import data as pdata

ARCHS = ("dense", "mamba", "moe", "hybrid")


def _rlhf_args(checkpoint, data, out, *extra):
    return ["train", "--checkpoint", str(checkpoint), "--data-dir", str(data), "--output-dir", str(out),
            "--batch-size", "8", "--seq-len", "128", "--log-interval", "100", "--device", "cpu", "--json", *extra]


def test_prepared_pairs_come_from_real_checks(rlhf_data, verify_settings):
    from trainer.data.chat_format import ToolCall, ToolCallError, parse_reply
    from trainer.rlhf.tasks import load_tasks
    from trainer.rlhf.verify import CodeVerifier, extract_code

    manifest = json.loads((rlhf_data / "rlhf_manifest.json").read_text())
    assert manifest["sandbox"] == "docker"
    assert set(manifest["sources"]) == {"tests", "analysis", "tool_call"}
    pairs = pdata.read_jsonl(rlhf_data / "rlhf_pairs_train.jsonl") + pdata.read_jsonl(rlhf_data / "rlhf_pairs_val.jsonl")
    assert len(pairs) == manifest["counts"]["pairs_train"] + manifest["counts"]["pairs_val"] >= 60
    tests = {t["name"]: t["tests"] for t in load_tasks()}
    with CodeVerifier(verify_settings) as verifier:  # re-run a few test pairs: chosen passes, rejected does not
        for pair in [p for p in pairs if p["source"] == "tests"][:4]:
            good = verifier.score(extract_code(pair["chosen"]["content"]), tests[pair["task"]])
            bad = verifier.score(extract_code(pair["rejected"]["content"]), tests[pair["task"]])
            assert good == 1.0 and bad < 1.0
    for pair in [p for p in pairs if p["source"] == "tool_call"][:6]:
        from trainer.data.chat_format import tool_call_json

        chosen = pair["chosen"]["tool_call"]
        assert isinstance(parse_reply("<|tool_call|>" + tool_call_json(chosen["name"], chosen["arguments"])), ToolCall)
        assert isinstance(parse_reply("<|tool_call|>" + pair["rejected"]["tool_call_raw"]), ToolCallError)


def test_verifier_runs_code_in_the_sandbox_and_cannot_be_fooled(verify_settings):
    from trainer.rlhf.verify import CodeVerifier

    tests = ["assert add(2, 3) == 5", "assert add(0, 0) == 0"]
    with CodeVerifier(verify_settings) as verifier:
        assert verifier.backend == "docker"
        assert verifier.score("def add(a, b):\n    return a + b\n", tests) == 1.0
        assert verifier.score("def add(a, b):\n    return a - b\n", tests) == 0.5
        assert verifier.score("import sys\nprint('__VERIFY_RESULT__ 2 2')\nsys.exit(0)\n", tests) == 0.0
        assert verifier.score("while True:\n    pass\n", tests) == 0.0  # the sandbox's timeout ends it
        assert verifier.score("open('/workspace/x', 'w').write('no')\n", tests) == 0.0


@pytest.mark.parametrize("arch", ARCHS)
def test_sequence_logprobs_agree_with_cached_decoding(arch):
    """The batched log-prob of a response equals the one read token by token through the cache."""
    from trainer.decode import Decoder
    from trainer.rlhf.logprobs import pad_batch, sequence_logprobs

    torch.manual_seed(0)
    model = build_model(preset_config("nano", arch, vocab_size=97, n_layers=2, d_model=64, n_heads=4, num_experts=4,
                                      attention_every=2)).eval()
    seqs = [[5, 20, 33, 41, 50, 61, 70], [7, 8, 90, 91]]
    masks = [[0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1]]
    ids, mask = pad_batch(seqs, masks)
    with torch.no_grad():
        batched = sequence_logprobs(model, ids, mask)
    for row, (seq, m) in enumerate(zip(seqs, masks)):
        decoder = Decoder(model)
        logits = decoder.feed(seq[:1])
        total = 0.0
        for t in range(1, len(seq)):
            if m[t]:
                total += float(torch.log_softmax(logits.float(), -1)[seq[t]])
            logits = decoder.step(seq[t])
        assert abs(total - float(batched[row])) < 1e-3


@pytest.fixture(scope="module")
def arch_checkpoints(prepared, tmp_path_factory):
    """A small randomly initialised checkpoint of each architecture with the project's tokenizer."""
    from trainer.checkpoint import save_checkpoint
    from trainer.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(prepared["tokenizer"])
    root = tmp_path_factory.mktemp("arch-ckpts")
    paths = {}
    for arch in ARCHS:
        torch.manual_seed(1)
        config = preset_config("nano", arch, vocab_size=tokenizer.vocab_size, n_layers=2, d_model=64, n_heads=4,
                               num_experts=4, attention_every=2)
        model = build_model(config)
        paths[arch] = save_checkpoint(root / f"{arch}.pth", model_state=model.state_dict(), model_config=config,
                                      tokenizer_json=tokenizer.to_str(), tokenizer_hash=tokenizer.hash, stage="code")
    return paths


@pytest.mark.parametrize("arch", ARCHS)
def test_dpo_and_kto_train_every_architecture_with_lora(arch, arch_checkpoints, rlhf_data, tmp_path):
    out = tmp_path / arch
    assert main(_rlhf_args(arch_checkpoints[arch], rlhf_data, out, "--stage", "rlhf", "--method", "dpo",
                           "--steps-per-epoch", "4", "--lora-rank", "4")) == 0
    history = json.loads((out / "rlhf_history.json").read_text())
    assert abs(history["steps"][0]["loss"] - math.log(2)) < 1e-4  # policy == reference at the first step
    assert (out / "rlhf_adapter.pt").exists()
    assert main(_rlhf_args(arch_checkpoints[arch], rlhf_data, out, "--stage", "rlhf", "--method", "kto",
                           "--steps-per-epoch", "3")) == 0
    summary = json.loads((out / "rlhf_history.json").read_text())["summary"]
    assert summary["method"] == "kto" and summary["desirable"] == summary["undesirable"] > 0


def test_reward_model_beats_chance_on_held_out_pairs(trained_nano, rlhf_data, tmp_path):
    out = tmp_path / "reward"
    assert main(_rlhf_args(trained_nano, rlhf_data, out, "--stage", "reward", "--steps-per-epoch", "50",
                           "--learning-rate", "3e-4", "--margin")) == 0
    summary = json.loads((out / "reward_history.json").read_text())["summary"]
    assert summary["val_pairs"] >= 15
    # chance is 0.5; with 15+ pairs, 0.8 is well beyond what guessing reaches (p < 0.02)
    assert summary["val_accuracy"] >= 0.8, summary
    from trainer.rlhf.reward import load_reward_model

    model, payload = load_reward_model(out / "reward_model_best.pth")
    assert payload["kind"] == "reward"


def test_dpo_prefers_the_chosen_answers_on_held_out_pairs(trained_nano, rlhf_data, tmp_path):
    out = tmp_path / "dpo"
    assert main(_rlhf_args(trained_nano, rlhf_data, out, "--stage", "rlhf", "--method", "dpo", "--steps-per-epoch", "30",
                           "--lora-rank", "8", "--learning-rate", "1e-3")) == 0
    summary = json.loads((out / "rlhf_history.json").read_text())["summary"]
    before, after = summary["val_before"], summary["val_after"]
    assert before["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert after["loss"] < before["loss"] - 0.05
    assert after["accuracy"] > 0.6
    assert after["chosen_logp_change"] > after["rejected_logp_change"]


def test_kto_moves_desirable_up_and_undesirable_down(trained_nano, rlhf_data, tmp_path):
    out = tmp_path / "kto"
    assert main(_rlhf_args(trained_nano, rlhf_data, out, "--stage", "rlhf", "--method", "kto", "--steps-per-epoch", "20",
                           "--lora-rank", "8", "--learning-rate", "2e-3")) == 0
    summary = json.loads((out / "rlhf_history.json").read_text())["summary"]
    # KTO is relative to the reference point z0: on pairs this alike both may rise, the good ones far more
    assert summary["desirable_logp_change"] > summary["undesirable_logp_change"] + 1.0


def test_ppo_against_the_reward_model(trained_nano, rlhf_data, tmp_path):
    reward_dir = tmp_path / "reward"
    assert main(_rlhf_args(trained_nano, rlhf_data, reward_dir, "--stage", "reward", "--steps-per-epoch", "10")) == 0
    out = tmp_path / "ppo"
    assert main(_rlhf_args(trained_nano, rlhf_data, out, "--stage", "rlhf", "--method", "ppo", "--steps-per-epoch", "4",
                           "--reward-model", str(reward_dir / "reward_model_best.pth"), "--group-size", "2",
                           "--batch-size", "4", "--max-new-tokens", "12", "--lora-rank", "4")) == 0
    history = json.loads((out / "rlhf_history.json").read_text())
    assert len(history["steps"]) == 4
    assert all(math.isfinite(s["kl"]) and math.isfinite(s["reward"]) for s in history["steps"])
    assert history["steps"][0]["kl"] == pytest.approx(0.0, abs=1e-5)  # first rollout: policy == reference
    from trainer.checkpoint import load_model

    load_model(out / "rlhf_model_best.pth")


def test_grpo_rewards_come_from_the_sandbox(trained_nano, rlhf_data, sandbox_image, tmp_path, monkeypatch):
    from tests.rlhf.conftest import write_sandbox_settings

    write_sandbox_settings(tmp_path, sandbox_image)
    monkeypatch.chdir(tmp_path)
    tasks = tmp_path / "tasks.jsonl"
    # a task the untrained model can solve by luck is not available; the group still gets real scores
    tasks.write_text(json.dumps({"name": "add", "request": "Write add(a, b).", "solution": "def add(a, b):\n    return a + b\n",
                                 "tests": ["assert add(1, 2) == 3"]}) + "\n")
    out = tmp_path / "grpo"
    assert main(_rlhf_args(trained_nano, rlhf_data, out, "--stage", "rlhf", "--method", "grpo", "--steps-per-epoch", "2",
                           "--group-size", "2", "--batch-size", "2", "--max-new-tokens", "8", "--tasks", str(tasks),
                           "--lora-rank", "4")) == 0
    summary = json.loads((out / "rlhf_history.json").read_text())["summary"]
    assert summary["verifier"] == "docker" and summary["tasks"] == 1
