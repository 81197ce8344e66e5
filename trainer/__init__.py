"""The embedded trainer: architectures, data, the one training loop, checkpoints."""

from common.errors import AssistantError


class TrainerError(AssistantError):
    """An expected trainer failure (bad corpus, checkpoint mismatch, out of memory...)."""
