"""Small corpora found on any machine (the standard library's docstrings and sources), a tokenizer
trained on them, and prepared stage 1/2 data: made once per test session by the project's own code."""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from assistant.cli import main
from tests.threads import _one_torch_thread  # noqa: F401 (autouse fixture)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
CODE_PACKAGES = ("json", "email", "http", "logging")


def write_text_corpus(target: Path, modules: int = 120) -> Path:
    """English prose: docstrings of standard-library modules, TinyStories-style separated."""
    docs = []
    for path in sorted(STDLIB.glob("*.py"))[:modules]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    docs.append(doc)
    target.mkdir(parents=True, exist_ok=True)
    (target / "stories.txt").write_text("\n<|endoftext|>\n".join(docs), encoding="utf-8")
    return target


def write_code_corpus(target: Path) -> Path:
    """Shell scripts (by shebang and by .sh) beside a copy of a few standard-library packages."""
    target.mkdir(parents=True, exist_ok=True)
    for package in CODE_PACKAGES:
        for path in sorted((STDLIB / package).glob("*.py")):
            dest = target / package / path.name
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(path.read_bytes())
    scripts = target / "scripts"
    scripts.mkdir(exist_ok=True)
    for i in range(12):
        body = f"#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.log; do\n  gzip -9 \"$f\"  # archive {i}\ndone\necho done {i}\n"
        (scripts / f"rotate{i}").write_text(body)
        (scripts / f"build{i}.sh").write_text(f"make -j{i + 1} all\ncp build/out{i} /tmp/\n")
    (scripts / "copy.sh").write_text((scripts / "build0.sh").read_text())  # a duplicate
    (scripts / "blob.sh").write_bytes(b"\x7fELF\x00\x00binary")  # a binary with a .sh name
    return target


@pytest.fixture(scope="session")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    return {"text": write_text_corpus(root / "text"), "code": write_code_corpus(root / "code")}


@pytest.fixture(scope="session")
def prepared(corpora, tmp_path_factory) -> dict[str, Path]:
    """A 1024-token tokenizer and prepared language + code data, through the real CLI."""
    root = tmp_path_factory.mktemp("prepared")
    tokenizer = root / "tokenizer" / "tokenizer.json"
    data = root / "processed"
    assert main(["data", "tokenizer", "--input", str(corpora["text"]), "--code-input", str(corpora["code"]),
                 "--glob", "*.py", "--vocab-size", "1024", "--output", str(tokenizer)]) == 0
    assert main(["data", "prepare", "--stage", "language", "--input", str(corpora["text"]),
                 "--tokenizer", str(tokenizer), "--output-dir", str(data)]) == 0
    assert main(["data", "prepare", "--stage", "code", "--input", str(corpora["code"]), "--glob", "*.py",
                 "--tokenizer", str(tokenizer), "--output-dir", str(data)]) == 0
    return {"root": root, "tokenizer": tokenizer, "data": data}


def train_args(prepared, output: Path, *extra: str, stage: str = "language") -> list[str]:
    """Common flags of a nano training run on the prepared data."""
    return ["train", "--stage", stage, "--model-size", "nano", "--data-dir", str(prepared["data"]),
            "--output-dir", str(output), "--batch-size", "8", "--seq-len", "64", "--log-interval", "50",
            "--eval-batches", "4", "--device", "cpu", *extra]


@pytest.fixture(scope="session")
def trained_nano(prepared, tmp_path_factory) -> Path:
    """A dense nano model trained 200 steps by the trainer (stage 1): the runtime's and stage 9's subject."""
    import torch

    output = tmp_path_factory.mktemp("trained-nano")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(train_args(prepared, output, "--steps-per-epoch", "200", "--eval-interval", "200",
                               "--use-rmsnorm", "--use-rope", "--use-swiglu", "--json")) == 0
    finally:
        torch.set_num_threads(before)
    return output / "language_model_best.pth"
