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
