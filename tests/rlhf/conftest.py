"""Stage 4/10 fixtures: the trainer's own tiny corpora, tokenizer, prepared data and nano model."""

from __future__ import annotations

from tests.trainer.conftest import _one_torch_thread, corpora, prepared, train_args, trained_nano  # noqa: F401
