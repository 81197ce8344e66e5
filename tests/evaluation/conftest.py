"""The trainer's session fixtures (tokenizer, prepared data, a trained nano model), shared here."""

from tests.trainer.conftest import _one_torch_thread, corpora, prepared, trained_nano  # noqa: F401
