"""``assistant generate`` end to end, and bad checkpoints: one clear line and a non-zero exit."""

from __future__ import annotations

import json

import torch

from assistant.cli import main


def one_line_error(capsys, argv, fragment: str, code: int = 1) -> None:
    try:
        result = main(argv)
    except SystemExit as exc:  # argparse
        result = exc.code
    assert result == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("assistant: error:") and fragment in err[0], err


def test_generate_streams_text_and_reports_the_run(checkpoints, capsys):
    assert main(["generate", "--checkpoint", str(checkpoints["hybrid"]), "--prompt", "def add(a, b):",
                 "--temperature", "0", "--max-new-tokens", "12", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "tokens," in captured.err and "tok/s" in captured.err and "stop: " in captured.err and "hybrid" in captured.err


def test_generate_chat_with_tools_reports_the_parsed_reply(checkpoints, capsys):
    assert main(["--model", str(checkpoints["dense"]), "generate", "--prompt", "list files", "--chat", "--tools",
                 "--system", "Be brief.", "--temperature", "0", "--max-new-tokens", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] <= 8 and result["prompt_tokens"] > 100  # the tool list is in the prompt
    assert result["reply"]["type"] in ("FinalAnswer", "ToolCall", "ToolCallError")


def test_bad_checkpoints_and_flags_are_one_line(checkpoints, tmp_path, capsys):
    one_line_error(capsys, ["generate", "--checkpoint", str(tmp_path / "nope.pth"), "--prompt", "x"], "checkpoint not found")
    good = checkpoints["dense"].read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 2])
    one_line_error(capsys, ["generate", "--checkpoint", str(truncated), "--prompt", "x"], "corrupt or truncated")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 100)
    one_line_error(capsys, ["generate", "--checkpoint", str(garbage), "--prompt", "x"], "corrupt or truncated")

    payload = torch.load(checkpoints["dense"], weights_only=True)
    payload["model"]["blocks.0.attn.q_proj.weight"][0, 0] += 1.0  # silent damage: only the checksum sees it
    damaged = tmp_path / "damaged.pth"
    torch.save(payload, damaged)
    for argv in (["generate", "--checkpoint", str(damaged), "--prompt", "x"],
                 ["quantize", "--checkpoint", str(damaged), "--quantization", "int8"],
                 ["model", "export", str(damaged), "--output", str(tmp_path / "out")],
                 ["model", "info", str(damaged)]):
        one_line_error(capsys, argv, "failed its checksum")
    assert not (tmp_path / "out").exists()

    one_line_error(capsys, ["generate", "--prompt", "x"], "no checkpoint given", code=2)
    one_line_error(capsys, ["generate", "--checkpoint", str(checkpoints["dense"]), "--prompt", "x", "--top-p", "2"],
                   "--top-p 2.0 must be at most 1", code=2)
    one_line_error(capsys, ["generate", "--checkpoint", str(checkpoints["dense"]), "--prompt", "x", "--device", "tpu"],
                   "unknown device 'tpu'", code=2)
    one_line_error(capsys, ["generate", "--checkpoint", str(checkpoints["dense"]), "--prompt", "x", "--max-new-tokens", "0"],
                   "must be at least 1", code=2)


