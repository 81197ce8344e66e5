"""Stage 1: language pretraining on natural text (TinyStories or any local English text)."""

from trainer.stages import Stage

STAGE = Stage(
    name="language",
    description="next-token pretraining on natural language",
    learning_rate=3e-4,
    warmup_steps=100,
)
