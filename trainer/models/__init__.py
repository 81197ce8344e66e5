"""The four architectures behind one config: dense, mamba, moe, hybrid."""

from trainer.models.config import ARCHITECTURES, SIZE_PRESETS, ModelConfig, preset_config
from trainer.models.loss import lm_loss
from trainer.models.model import CausalLM, build_model, count_parameters

__all__ = [
    "ARCHITECTURES", "SIZE_PRESETS", "ModelConfig", "preset_config",
    "CausalLM", "build_model", "count_parameters", "lm_loss",
]
