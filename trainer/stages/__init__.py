"""A stage is data + loss + defaults, never a new loop. Every stage runs through trainer.loop."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    learning_rate: float
    warmup_steps: int
    # the stage whose checkpoint it usually continues from (None: trains from scratch)
    follows: str | None = None
    # where the trainer reads its prepared data: <data_dir>/<data_prefix>_{train,val}.npy
    data_prefix: str = ""
    # supervised on conversations: windows start at a conversation and the loss counts only
    # targets whose <stage>_{train,val}_mask.npy entry is 1 (the chat format's assistant tokens)
    masked: bool = False
    defaults: dict = field(default_factory=dict)

    @property
    def data(self) -> str:
        return self.data_prefix or self.name


def get_stage(name: str) -> Stage:
    from trainer.stages.code import STAGE as code
    from trainer.stages.language import STAGE as language
    from trainer.stages.tool_calling import STAGE as tool_calling

    stages = {s.name: s for s in (language, code, tool_calling)}
    if name not in stages:
        from trainer import TrainerError

        raise TrainerError(f"unknown stage '{name}'", f"choose from {', '.join(stages)}")
    return stages[name]


TRAINABLE_STAGES = ("language", "code", "tool_calling")
