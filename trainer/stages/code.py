"""Stage 2: code fine-tuning of a stage-1 checkpoint on scripts and source files."""

from trainer.stages import Stage

STAGE = Stage(
    name="code",
    description="next-token fine-tuning on code (bash scripts, --glob for other languages)",
    learning_rate=1e-4,
    warmup_steps=50,
    follows="language",
)
