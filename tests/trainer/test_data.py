"""Tokenizer and data preparation: reserved tokens, splits, manifests, skipped files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assistant.cli import main
from trainer.data.corpora import CorpusReport, iter_text_documents
from trainer.data.tokenizer import SPECIAL_TOKENS, load_tokenizer


def test_tokenizer_reserves_special_tokens_and_round_trips(prepared):
    tok = load_tokenizer(prepared["tokenizer"])
    assert tok.vocab_size == 1024
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    text = "def f(x):\n    return x  # ünïcode ✓\n<|user|>hi<|end|>"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.special_ids["<|user|>"] in ids  # special tokens stay single tokens


def test_prepared_stages_have_manifests_splits_and_provenance(prepared):
    for stage in ("language", "code"):
        manifest = json.loads((prepared["data"] / f"{stage}_manifest.json").read_text())
        train = np.load(prepared["data"] / f"{stage}_train.npy", mmap_mode="r")
        val = np.load(prepared["data"] / f"{stage}_val.npy", mmap_mode="r")
        assert train.dtype == np.uint16 and train.size == manifest["train_tokens"] > 0
        assert val.size == manifest["val_tokens"] > 0
        assert manifest["tokenizer_hash"] == load_tokenizer(prepared["tokenizer"]).hash
        assert int(train.max()) < 1024
    code = json.loads((prepared["data"] / "code_manifest.json").read_text())
    names = {p.rsplit("/", 1)[-1] for p in (s["path"] for s in code["sources"])}
    assert "rotate3" in names and "build3.sh" in names and "decoder.py" in names  # shebang, .sh, --glob
    assert code["skipped"]["duplicate"] == 1 and code["skipped"]["binary"] == 1
    assert "blob.sh" not in names


def test_text_formats_tinystories_jsonl_and_plain(tmp_path):
    (tmp_path / "a.txt").write_text("One story.\n<|endoftext|>\nTwo story.\n<|endoftext|>\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "From json."}) + "\n\n" + json.dumps({"text": "Again."}) + "\n")
    (tmp_path / "c.md").write_text("# A page\nwith words")
    report = CorpusReport()
    docs = list(iter_text_documents([tmp_path], report))
    assert docs == ["One story.", "Two story.", "From json.", "Again.", "# A page\nwith words"]
    assert [s.documents for s in report.sources] == [2, 2, 1]


def test_split_is_deterministic_and_keeps_both_sides_non_empty(prepared, tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("a single short document " * 50)
    for out in ("x", "y"):
        assert main(["data", "prepare", "--stage", "language", "--input", str(one), "--tokenizer",
                     str(prepared["tokenizer"]), "--output-dir", str(tmp_path / out)]) == 0
    a = np.load(tmp_path / "x" / "language_train.npy")
    b = np.load(tmp_path / "y" / "language_train.npy")
    assert np.array_equal(a, b) and a.size > 0
    assert np.load(tmp_path / "x" / "language_val.npy").size > 0


@pytest.mark.parametrize("case", ["missing", "empty", "not-utf8-tokenizer"])
def test_bad_corpus_inputs_fail_with_one_line(prepared, tmp_path, capsys, case):
    out = tmp_path / "out"
    if case == "missing":
        args = ["data", "prepare", "--stage", "language", "--input", str(tmp_path / "nope"),
                "--tokenizer", str(prepared["tokenizer"]), "--output-dir", str(out)]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "blank.txt").write_text("   \n")
        args = ["data", "prepare", "--stage", "language", "--input", str(tmp_path / "empty"),
                "--tokenizer", str(prepared["tokenizer"]), "--output-dir", str(out)]
    else:
        bad = tmp_path / "tok.json"
        bad.write_bytes(b"\xff\xfe not json")
        args = ["data", "prepare", "--stage", "language", "--input", str(tmp_path),
                "--tokenizer", str(bad), "--output-dir", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("assistant: error:")
    assert not out.exists() or not any(out.glob("*.npy"))  # nothing half-written


def test_download_offline_fails_with_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["data", "download", "tinystories", "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreachable" in err[0]
    assert not list(tmp_path.iterdir())
