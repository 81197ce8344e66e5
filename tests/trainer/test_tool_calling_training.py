"""Stage 3 training: the loss counts the assistant's tokens only, and the run records the
compact tool style so the runtime renders prompts the way the model was trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assistant.cli import main
from trainer.data.dataset import masked_windows
from trainer.data.tokenizer import load_tokenizer
from trainer.data.tool_calling import render_examples
from trainer.models import build_model, lm_loss, preset_config

CONVERSATIONS = [
    [{"role": "system", "content": "You are a coding assistant."},
     {"role": "user", "content": f"What is {a} * {b}?"},
     {"role": "assistant", "content": "", "tool_call": {"name": "execute_python", "arguments": {"code": f"print({a} * {b})"}}},
     {"role": "tool", "content": json.dumps({"tool": "execute_python", "ok": True, "stdout": f"{a * b}\n"})},
     {"role": "assistant", "content": f"{a} * {b} is {a * b}."}]
    for a, b in [(3, 4), (12, 9), (7, 7), (21, 2), (5, 13), (8, 6)]
]


def _write(data_dir, tokenizer, split, conversations):
    ids, mask, starts = render_examples([{"messages": c} for c in conversations], tokenizer)
    np.save(data_dir / f"tool_calling_{split}.npy", np.asarray(ids, dtype=np.uint16))
    np.save(data_dir / f"tool_calling_{split}_mask.npy", np.asarray(mask, dtype=np.uint8))
    np.save(data_dir / f"tool_calling_{split}_starts.npy", np.asarray(starts, dtype=np.int64))
    return ids, mask


@pytest.fixture(scope="module")
def tc_data(prepared, tmp_path_factory):
    tokenizer = load_tokenizer(prepared["tokenizer"])
    data = tmp_path_factory.mktemp("tc-data")
    ids, mask = _write(data, tokenizer, "train", CONVERSATIONS * 4)
    _write(data, tokenizer, "val", CONVERSATIONS[:2])
    (data / "tool_calling_manifest.json").write_text(json.dumps({
        "stage": "tool_calling", "tokenizer_hash": tokenizer.hash, "tokenizer_path": str(prepared["tokenizer"]),
        "chat": {"tools_style": "compact"}}))
    return {"dir": data, "tokenizer": tokenizer, "ids": ids, "mask": mask}


def test_loss_ignores_everything_but_assistant_tokens(tc_data):
    """Changing a user/system/tool target leaves the loss unchanged; changing an assistant target changes it."""
    ids, mask = np.asarray(tc_data["ids"]), np.asarray(tc_data["mask"])
    x, y, m = masked_windows(ids, mask, [0], 1200)
    assert m.sum() > 0 and (m == 0).sum() > 0
    torch.manual_seed(0)
    model = build_model(preset_config("nano", "dense", vocab_size=tc_data["tokenizer"].vocab_size, position="rope",
                                      max_seq_len=2048)).eval()
    with torch.no_grad():
        logits, _ = model(x)
        base = float(lm_loss(logits, y, m))
        outside = int(np.flatnonzero(m[0].numpy() == 0)[5])
        inside = int(np.flatnonzero(m[0].numpy() == 1)[0])
        y_out = y.clone()
        y_out[0, outside] = (y_out[0, outside] + 1) % 100
        y_in = y.clone()
        y_in[0, inside] = (y_in[0, inside] + 1) % 100
        assert float(lm_loss(logits, y_out, m)) == pytest.approx(base)
        assert float(lm_loss(logits, y_in, m)) != pytest.approx(base)
    # the mask marks exactly the assistant turns: decoded, the marked targets are the calls and answers
    marked = tc_data["tokenizer"].decode([int(t) for t, k in zip(y[0], m[0]) if k])
    assert "execute_python" in marked and "3 * 4 is 12." in marked and "What is" not in marked


def test_stage3_training_lowers_the_assistant_loss_and_records_the_tool_style(tc_data, prepared, tmp_path):
    out = tmp_path / "tc"
    args = ["train", "--stage", "tool_calling", "--model-size", "nano", "--data-dir", str(tc_data["dir"]),
            "--output-dir", str(out), "--batch-size", "2", "--seq-len", "1024", "--max-seq-len", "1024", "--steps-per-epoch", "30",
            "--eval-interval", "40", "--eval-batches", "1", "--learning-rate", "3e-3", "--device", "cpu",
            "--use-rope", "--json"]
    assert main(args) == 0
    history = json.loads((out / "tool_calling_model_history.json").read_text())
    assert history["evals"][-1]["val_loss"] < history["evals"][0]["val_loss"] * 0.7
    from trainer.checkpoint import load_checkpoint, load_model

    assert load_checkpoint(out / "tool_calling_model_best.pth")["chat"]["tools_style"] == "compact"

    _, tokenizer, _ = load_model(out / "tool_calling_model_best.pth")
    assert tokenizer.tools_style == "compact"  # so the runtime renders the tool list as trained


def test_replay_mixes_earlier_stage_windows_into_conversation_batches(tc_data, prepared):
    """About ``fraction`` of the rows are plain windows of the replay data, weighted like a conversation
    row; the others are untouched conversations; the mix resumes exactly from its state."""
    from trainer.data.dataset import ConversationSampler, ReplayMixSampler, open_mask, open_tokens

    path = tc_data["dir"] / "tool_calling_train.npy"
    tokens = open_tokens(path)
    mask, starts = open_mask(path, tokens)
    replay = np.asarray(open_tokens(prepared["data"] / "language_train.npy"))

    def sampler():
        return ReplayMixSampler(ConversationSampler(tokens, mask, starts, 128, 8, seed=3), [replay], 0.25, seed=3)

    mix, plain = sampler(), ConversationSampler(tokens, mask, starts, 128, 8, seed=3)
    replayed = 0
    for _ in range(40):
        x, y, m = mix.next_batch()
        px, _, pm = plain.next_batch()
        for row in range(x.size(0)):
            if torch.equal(x[row], px[row]):
                assert torch.equal(m[row], pm[row].float())  # a conversation row keeps its 0/1 mask
                continue
            replayed += 1
            assert torch.allclose(m[row], torch.full_like(m[row], mix.weight)) and 0 < mix.weight < 1
            window = x[row].numpy()
            hits = np.flatnonzero(replay[: replay.size - 128] == window[0])
            assert any(np.array_equal(replay[h : h + 128], window) for h in hits)  # a real window of the replay data
            assert torch.equal(y[row][:-1], x[row][1:])
    assert 0.15 < replayed / 320 < 0.35
    state = mix.state_dict()
    expected = mix.next_batch()
    resumed = sampler()
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(resumed.next_batch(), expected))


def test_stage3_replay_keeps_the_language_model(tc_data, prepared, tmp_path):
    """Stage 3 with --replay-fraction also trains on the language data: its language loss ends clearly
    below the same run's without replay; without the earlier data in --data-dir the flag is one clear line."""
    from trainer.checkpoint import load_model
    from trainer.evaluate import perplexity

    data = tmp_path / "data"
    data.mkdir()
    for f in tc_data["dir"].iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    for name in ("language_train.npy", "language_val.npy", "language_manifest.json"):
        (data / name).write_bytes((prepared["data"] / name).read_bytes())
    language_val = np.asarray(np.load(prepared["data"] / "language_val.npy"))

    def stage3(out, *extra):
        assert main(["train", "--stage", "tool_calling", "--model-size", "nano", "--data-dir", str(data), "--output-dir", str(out),
                     "--batch-size", "4", "--seq-len", "256", "--max-seq-len", "1024", "--steps-per-epoch", "40",
                     "--eval-interval", "40", "--eval-batches", "1", "--learning-rate", "3e-3", "--device", "cpu",
                     "--use-rope", "--json", *extra]) == 0
        model = load_model(out / "tool_calling_model_last.pth")
        model = model[0]
        return perplexity(model, language_val, seq_len=128)["loss"]

    with_replay = stage3(tmp_path / "replay", "--replay-fraction", "0.5")
    without = stage3(tmp_path / "plain")
    assert with_replay < without - 0.5  # nats per token (measured: 5.8 vs 7.0)
    for name in ("language_train.npy", "language_val.npy", "language_manifest.json"):
        (data / name).unlink()
    assert main(["train", "--stage", "tool_calling", "--model-size", "nano", "--data-dir", str(data), "--output-dir",
                 str(tmp_path / "none"), "--replay-fraction", "0.2", "--steps-per-epoch", "1", "--device", "cpu"]) != 0
