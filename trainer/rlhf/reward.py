"""The reward model: the policy's backbone with a scalar head on the last response token.

Saved as an ordinary checkpoint (``kind: reward``) whose extra ``reward_head`` entry holds the
head, so the backbone loads with the same code as any model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainer import TrainerError


class RewardModel(nn.Module):
    """tokens (B, T) + lengths -> one scalar per sequence, read at its last real token."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.d_model, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (backbone.config.d_model + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hidden, aux = self.backbone(ids, head=False)  # (B, T, d)
        last = hidden[torch.arange(ids.size(0), device=ids.device), (lengths - 1).clamp(min=0)]  # (B, d)
        return self.head(last.float()).squeeze(-1), aux


def load_reward_model(path: str | Path, device="cpu") -> tuple[RewardModel, dict]:
    from trainer.checkpoint import load_checkpoint, model_from_payload

    payload = load_checkpoint(path)
    if payload.get("kind") != "reward" or "reward_head" not in payload:
        raise TrainerError(f"{path} is not a reward model", "train one with 'assistant train --stage reward'")
    backbone = model_from_payload(payload)
    model = RewardModel(backbone)
    model.head.load_state_dict(payload["reward_head"])
    return model.to(device).eval(), payload
