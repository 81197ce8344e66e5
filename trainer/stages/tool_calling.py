"""Stage 3: tool calling. Supervised fine-tuning on conversations with real tool results,
with the loss on the assistant's tokens only (the chat format's mask)."""

from trainer.stages import Stage

STAGE = Stage(
    name="tool_calling",
    description="fine-tuning on tool-calling conversations (loss on assistant tokens only)",
    learning_rate=3e-4,
    warmup_steps=30,
    follows="code",
    masked=True,
)
