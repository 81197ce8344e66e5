"""The trainer's session fixtures (tokenizer, prepared data, a trained nano model), shared here."""

from tests.threads import _one_torch_thread  # noqa: F401 (autouse fixture)
from tests.trainer.conftest import corpora, prepared, trained_nano  # noqa: F401
