"""Every bad input to the trainer is one clear line, a non-zero exit, and no half-written file."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from assistant.cli import main
from tests.trainer.conftest import train_args


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """A 4-step dense and a 4-step mamba checkpoint to feed bad combinations."""
    out = tmp_path_factory.mktemp("trained")
    for arch in ("dense", "mamba"):
        assert main(train_args(prepared, out, "--architecture", arch, "--steps-per-epoch", "4", "--eval-interval", "4")) == 0
    return out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("assistant: error: ")
    return err[0]


def checkpoints(folder):
    return sorted(p.name for p in folder.glob("*.pth")) if folder.exists() else []


def run_bad(args, capsys, expected_code=1) -> str:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    assert code == expected_code
    return one_error_line(capsys)


def test_missing_prepared_data(prepared, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "out", "--steps-per-epoch", "2")
    args[args.index("--data-dir") + 1] = str(tmp_path / "nothing")
    assert "assistant data prepare" in run_bad(args, capsys)


def test_corrupt_npy(prepared, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("language_manifest.json", "language_val.npy"):
        (data / name).write_bytes((prepared["data"] / name).read_bytes())
    (data / "language_train.npy").write_bytes(b"\x93NUMPY garbage that is not an array")
    args = train_args(prepared, tmp_path / "out", "--steps-per-epoch", "2")
    args[args.index("--data-dir") + 1] = str(data)
    assert "language_train.npy" in run_bad(args, capsys)
    assert checkpoints(tmp_path / "out") == []


def test_checkpoint_of_another_architecture(prepared, trained, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "out", "--stage", "code", "--architecture", "dense", "--checkpoint",
                      str(trained / "language_mamba_model_best.pth"), "--steps-per-epoch", "2", stage="code")
    assert "is a mamba model, not dense" in run_bad(args, capsys)
    assert checkpoints(tmp_path / "out") == []


def test_flags_that_contradict_the_checkpoint(prepared, trained, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "out", "--checkpoint", str(trained / "language_model_best.pth"),
                      "--use-rope", "--steps-per-epoch", "2", stage="code")
    line = run_bad(args, capsys)
    assert "--use-rope" in line and "learned" in line


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not-a-checkpoint"])
def test_damaged_checkpoints(prepared, trained, tmp_path, capsys, damage):
    good = (trained / "language_model_best.pth").read_bytes()
    bad = tmp_path / "bad.pth"
    if damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "flipped":  # flip bytes inside the weights: caught by the checksum
        data = bytearray(good)
        start = data.find(b"data/0") + 200
        for i in range(start, start + 64):
            data[i] ^= 0xFF
        bad.write_bytes(bytes(data))
    else:
        bad.write_text("hello")
    args = train_args(prepared, tmp_path / "out", "--checkpoint", str(bad), "--steps-per-epoch", "2", stage="code")
    line = run_bad(args, capsys)
    assert "bad.pth" in line and ("corrupt" in line or "checksum" in line or "truncated" in line)
    assert checkpoints(tmp_path / "out") == []


def test_checkpoint_trained_with_another_tokenizer(prepared, corpora, tmp_path, capsys):
    other_tok = tmp_path / "tok.json"
    other_data = tmp_path / "data"
    assert main(["data", "tokenizer", "--input", str(corpora["text"]), "--vocab-size", "600", "--output", str(other_tok)]) == 0
    assert main(["data", "prepare", "--stage", "language", "--input", str(corpora["text"]), "--tokenizer",
                 str(other_tok), "--output-dir", str(other_data)]) == 0
    other_args = train_args(prepared, tmp_path / "other", "--steps-per-epoch", "2", "--eval-interval", "2")
    other_args[other_args.index("--data-dir") + 1] = str(other_data)
    assert main(other_args) == 0
    capsys.readouterr()
    args = train_args(prepared, tmp_path / "out", "--checkpoint", str(tmp_path / "other" / "language_model_best.pth"),
                      "--steps-per-epoch", "2", stage="code")
    assert "tokenizer" in run_bad(args, capsys)


def test_sequence_longer_than_the_model_allows(prepared, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "out", "--steps-per-epoch", "2")
    args[args.index("--seq-len") + 1] = "4096"
    assert "exceeds the model's maximum of 512" in run_bad(args, capsys)


def test_unknown_device_and_bad_numbers_are_usage_errors(prepared, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "out", "--steps-per-epoch", "2")
    args[args.index("--device") + 1] = "tpu"
    assert "unknown device" in run_bad(args, capsys, expected_code=2)
    assert "at least 1" in run_bad(train_args(prepared, tmp_path / "out", "--batch-size", "0"), capsys, expected_code=2)


def test_resume_with_nothing_to_resume(prepared, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "out", "--steps-per-epoch", "2", "--resume")
    assert "nothing to resume" in run_bad(args, capsys)


def test_out_of_memory_suggests_a_smaller_batch(prepared, tmp_path):
    """A real allocation failure: the process may address 6 GiB, the batch's logits need ~10 GiB."""
    limit = 6 << 30

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    args = train_args(prepared, tmp_path / "out", "--steps-per-epoch", "2")
    args[args.index("--batch-size") + 1] = "40000"
    result = subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True,
                            preexec_fn=cap_memory, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("assistant: error: out of memory at --batch-size 40000")
    assert "--batch-size 20000 --gradient-accumulation-steps 2" in lines[-1]
    assert checkpoints(tmp_path / "out") == []
