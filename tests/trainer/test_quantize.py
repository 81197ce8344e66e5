"""Stage 9: int8/int4 weight-only quantization, its kernels and fallbacks, and ``assistant quantize``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from assistant.cli import main
from tests.trainer.conftest import train_args
from trainer.checkpoint import load_checkpoint, load_model
from trainer.models import ARCHITECTURES, build_model, preset_config
from trainer.quantize import (
    GROUP_SIZES,
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    float32_linear_bytes,
    linear_weight_bytes,
    pack_int4,
    quantize_int4,
    quantize_int8,
    quantize_model,
    unpack_int4,
)

REPO = Path(__file__).resolve().parents[2]


def test_int8_and_int4_formats_reconstruct_the_weights():
    torch.manual_seed(0)
    w = torch.randn(64, 256) * 0.05
    q, s = quantize_int8(w)
    assert q.dtype == torch.int8 and s.shape == (64,)
    assert (q.float() * s[:, None] - w).abs().max() <= s.max() / 2 + 1e-7  # half a step at most
    codes = torch.randint(0, 16, (8, 32))
    assert torch.equal(unpack_int4(pack_int4(codes)), codes.to(torch.uint8))
    for group in GROUP_SIZES:
        packed, scales, zeros = quantize_int4(w, group)
        assert packed.shape == (64, 128) and scales.shape == (64, 256 // group) and scales.dtype == torch.bfloat16
        error = (dequantize_int4(packed, scales, zeros, group) - w).pow(2).mean().sqrt()
        assert error < 0.12 * w.std()  # 4 bits: ~1/16 of the range per step


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantized_layers_match_their_dequantized_weights(dtype):
    torch.manual_seed(0)
    linear = nn.Linear(128, 64, bias=True)
    for rows in (1, 5, 40):  # decode steps take the kernel, prompts dequantize + GEMM
        x = torch.randn(rows, 128)
        for layer in (Int8Linear.from_linear(linear), Int4Linear.from_linear(linear, 32)):
            layer.compute_dtype = dtype
            reference = x @ layer.dequantized().t() + linear.bias
            out = layer(x)
            assert out.dtype == torch.float32 and out.shape == (rows, 64)
            tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-4
            assert (out - reference).norm() / reference.norm() < tolerance


def test_a_kernel_that_gives_wrong_answers_is_not_used():
    # PyTorch's int8 CPU kernel returns garbage for an input width of 8 (and crashes at 4): such
    # layers must take the dequantize-and-matmul path and still be right.
    torch.manual_seed(0)
    linear = nn.Linear(8, 32, bias=False)
    layer = Int8Linear.from_linear(linear)
    layer.compute_dtype = torch.bfloat16
    x = torch.randn(3, 8)
    reference = x @ layer.dequantized().t()
    assert (layer(x) - reference).norm() / reference.norm() < 2e-2
    assert layer._fast[("cpu", torch.bfloat16)] is False
    wide = Int8Linear.from_linear(nn.Linear(128, 32))
    wide.compute_dtype = torch.bfloat16
    wide(torch.randn(2, 128))
    assert wide._fast[("cpu", torch.bfloat16)] is True  # the real kernel where it works


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_linear_is_quantized_and_the_sizes_shrink(arch):
    config = preset_config("nano", arch, vocab_size=512)
    model = build_model(config)
    float_bytes = linear_weight_bytes(model)
    for mode, group, minimum in [("int8", None, 3.5)] + [("int4", g, 6.0) for g in GROUP_SIZES]:
        quantized = build_model(config)
        quantized.load_state_dict(model.state_dict())
        layout = quantize_model(quantized, mode, group or 64)
        assert not [n for n, m in quantized.named_modules() if isinstance(m, nn.Linear) and not n.endswith("router")]
        assert float32_linear_bytes(quantized) == float_bytes
        assert float_bytes / linear_weight_bytes(quantized) >= minimum, (mode, group)
        if mode == "int4" and arch in ("mamba", "hybrid"):
            assert layout["layers"]["blocks.0.mixer.dt_proj"] == "int8"  # 8 inputs: too narrow for a group


def test_quantize_command_meets_the_bars_and_the_runtime_loads_the_result(trained_nano, prepared, tmp_path, capsys):
    import math

    data = str(prepared["data"])
    out8 = tmp_path / "model_int8.pth"
    # the seed's entry point, as a user would run it
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "quantize_model.py"), "--checkpoint", str(trained_nano),
                             "--quantization", "int8", "--data-dir", data, "--output", str(out8), "--eval-windows", "16"],
                            capture_output=True, text=True, cwd=tmp_path, check=False,
                            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "validation perplexity:" in result.stdout and "x smaller" in result.stdout and "tokens/s" in result.stdout
    out4 = tmp_path / "model_int4.pth"
    assert main(["quantize", "--checkpoint", str(trained_nano), "--quantization", "int4", "--group-size", "32",
                 "--data-dir", data, "--output", str(out4), "--eval-windows", "16"]) == 0
    printed = capsys.readouterr().out
    assert "(int4, group 32)" in printed

    for path, mode, size_bar, ppl_bar in ((out8, "int8", 3.5, 1.0), (out4, "int4", 6.0, 5.0)):
        payload = load_checkpoint(path)  # checksum verified
        report = payload["quantization"]["report"]
        assert payload["quantization"]["mode"] == mode and payload["kind"] == "quantized"
        assert report["size"]["linear_ratio"] >= size_bar
        assert report["size"]["file_bytes_after"] < report["size"]["file_bytes_before"]
        ppl = report["perplexity"]
        assert ppl["before"] < 1000 and math.isfinite(ppl["after"])  # a trained model, not noise
        assert ppl["change_pct"] <= ppl_bar, f"{mode} perplexity {ppl['change_pct']:+.2f}% over the +{ppl_bar}% bar"
        assert report["decode_tokens_per_s"]["before"] > 0 and report["decode_tokens_per_s"]["after"] > 0
        assert payload["quantization"]["activation_dtype"]["cpu"] in ("float32", "bfloat16")

        model, tokenizer, _ = load_model(path)
        float_model, _, _ = load_model(trained_nano)
        ids = torch.tensor([tokenizer.encode("Return the value of the attribute")])
        with torch.no_grad():
            quantized_logits, float_logits = model(ids)[0], float_model(ids)[0]
        agreement = (quantized_logits.argmax(-1) == float_logits.argmax(-1)).float().mean()
        assert agreement > 0.8, f"{mode}: the quantized model's predictions diverge from the float model's"


def test_bad_quantize_input_is_one_line(trained_nano, tmp_path, capsys):
    assert main(["quantize", "--checkpoint", str(tmp_path / "missing.pth"), "--quantization", "int8"]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["quantize", "--checkpoint", str(trained_nano), "--quantization", "int3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'int3'" in err[0]
    out = tmp_path / "q.pth"
    assert main(["quantize", "--checkpoint", str(trained_nano), "--quantization", "int8", "--data-dir", str(tmp_path),
                 "--output", str(out), "--decode-tokens", "4"]) == 0
    assert "perplexity: not measured" in capsys.readouterr().out
    assert main(["quantize", "--checkpoint", str(out), "--quantization", "int4"]) == 1
    assert "already quantized" in capsys.readouterr().err


def test_training_continues_from_a_quantized_checkpoint_with_its_dequantized_weights(trained_nano, prepared, tmp_path, capsys):
    """Fine-tuning the shipped int8 model: ``--checkpoint model_int8.pth`` starts from codes x scales."""
    from trainer.quantize import dequantized_payload

    int8 = tmp_path / "model_int8.pth"
    assert main(["quantize", "--checkpoint", str(trained_nano), "--quantization", "int8", "--output", str(int8),
                 "--data-dir", str(prepared["data"]), "--eval-windows", "4", "--decode-tokens", "4"]) == 0
    start = dequantized_payload(load_checkpoint(int8))
    shipped = load_model(int8)[0]
    layer = shipped.blocks[0].attn.q_proj
    assert isinstance(layer, Int8Linear)
    assert torch.equal(start["model"]["blocks.0.attn.q_proj.weight"], layer.dequantized(torch.float32))
    capsys.readouterr()
    out = tmp_path / "tuned"
    assert main(train_args(prepared, out, "--checkpoint", str(int8), "--steps-per-epoch", "2", "--eval-interval", "2",
                           "--learning-rate", "1e-12", "--warmup-steps", "0", stage="code")) == 0
    assert "int8 weights dequantized to float32" in capsys.readouterr().out
    tuned = load_checkpoint(out / "code_model_last.pth")
    assert not tuned.get("quantization")
    # a vanishing learning rate leaves the weights where they started: the dequantized ones
    assert torch.allclose(tuned["model"]["blocks.0.attn.q_proj.weight"], start["model"]["blocks.0.attn.q_proj.weight"], atol=1e-7)
    assert not torch.allclose(tuned["model"]["blocks.0.attn.q_proj.weight"], load_checkpoint(trained_nano)["model"]["blocks.0.attn.q_proj.weight"], atol=1e-5)

