"""Byte-level BPE tokenizer with the chat, tool-call and image tokens reserved from the start.

Reserving them before the first training run means later stages (tool calling, multi-modal)
never resize the embeddings. The tokenizer's identity is the SHA-256 of its JSON, recorded in
every prepared dataset and checkpoint so mismatches are caught before training.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Iterator

from common.atomic import atomic_write_text
from trainer import TrainerError

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool_call|>",
    "<|tool_result|>", "<|end|>", "<|image|>", "<|pad|>",
] + [f"<|reserved_{i}|>" for i in range(7)]

DEFAULT_TOKENIZER_PATH = Path("data/tokenizer/tokenizer.json")


class TextTokenizer:
    """A thin wrapper over ``tokenizers.Tokenizer`` with the project's special tokens."""

    def __init__(self, tokenizer, path: Path | None = None) -> None:
        self._tok = tokenizer
        self.path = path
        self.hash = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()
        self.special_ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in self.special_ids.items() if i is None]
        if missing:
            raise TrainerError(f"tokenizer {path} lacks special tokens {missing}", "retrain it with 'assistant data tokenizer'")
        self.bos_ids = self._prefix_ids()
        self.extra_stop_ids: list[int] = []  # an imported model's own end-of-text token(s)

    def _prefix_ids(self) -> list[int]:
        """Tokens the tokenizer's post-processor puts before a sequence (an imported Llama's BOS)."""
        plain = self._tok.encode("a", add_special_tokens=False).ids
        full = self._tok.encode("a", add_special_tokens=True).ids
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start]
        return []

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def eos_id(self) -> int:
        return self.special_ids["<|endoftext|>"]

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` alone (no BOS/EOS from a post-processor; see ``bos_ids``)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self._tok.id_to_token(index)

    def to_str(self) -> str:
        return self._tok.to_str()

    @property
    def backend(self):
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok


def train_tokenizer(documents: Iterator[str], vocab_size: int = 32000, min_frequency: int = 2) -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 256 + len(SPECIAL_TOKENS) + 16:
        raise TrainerError(f"vocab size {vocab_size} is too small", f"use at least {256 + len(SPECIAL_TOKENS) + 16}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer=trainer)
    return TextTokenizer(tok)


def save_tokenizer(tokenizer: TextTokenizer, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, tokenizer.to_str())
    tokenizer.path = path
    return path


def load_tokenizer(path: str | Path) -> TextTokenizer:
    from tokenizers import Tokenizer

    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise TrainerError(f"tokenizer not found: {path}", "train one with 'assistant data tokenizer --input ...'")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise TrainerError(f"tokenizer {path} is corrupt: {str(exc)[:120]}", "retrain it with 'assistant data tokenizer'") from exc
    return TextTokenizer(tok, path)


def tokenizer_from_string(text: str) -> TextTokenizer:
    from tokenizers import Tokenizer

    return TextTokenizer(Tokenizer.from_str(text))
