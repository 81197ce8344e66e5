"""Mixture-of-experts transformer: the dense block with a top-k routed MLP.

Routing (Mixtral): p = softmax(router(x)); keep the top-k experts per token and renormalise
their weights. Auxiliary losses, added to the training loss with configurable weights:
  load balance (Switch): E * sum_e f_e * P_e, f_e = share of routed slots sent to expert e,
                          P_e = mean router probability of e (1.0 when perfectly balanced);
  router z-loss (ST-MoE): mean over tokens of logsumexp(router logits)^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.config import ModelConfig
from trainer.models.dense import TransformerBlock
from trainer.models.layers import make_mlp


def dispatch(x: torch.Tensor, expert_index: torch.Tensor, weights: torch.Tensor, experts: nn.ModuleList) -> torch.Tensor:
    """out[i] = sum_j weights[i, j] * experts[expert_index[i, j]](x[i]) without a loop over tokens.

    x: (N, d); expert_index, weights: (N, k). The N*k routed slots are sorted by expert so each
    expert runs once on one contiguous slice, then results are scattered back with index_add.
    """
    n_tokens, k = expert_index.shape
    flat = expert_index.reshape(-1)  # (N*k,)
    order = torch.argsort(flat, stable=True)
    token_of_slot = order // k  # which token each sorted slot came from
    counts = torch.bincount(flat, minlength=len(experts)).tolist()
    routed = x[token_of_slot]  # (N*k, d), grouped by expert
    # split (not slicing): its backward joins the experts' gradients in one pass instead of
    # zero-filling a full-size gradient per expert and summing them
    outputs = [expert(part) for expert, part, count in zip(experts, routed.split(counts), counts) if count]
    out_slots = torch.cat(outputs) * weights.reshape(-1)[order].unsqueeze(-1).to(x.dtype)
    return torch.zeros_like(x).index_add_(0, token_of_slot, out_slots.to(x.dtype))


def dispatch_reference(x, expert_index, weights, experts) -> torch.Tensor:
    """The slow per-token loop, for tests."""
    out = torch.zeros_like(x)
    for i in range(x.size(0)):
        for j in range(expert_index.size(1)):
            out[i] += weights[i, j] * experts[int(expert_index[i, j])](x[i : i + 1])[0]
    return out


def router_losses(logits: torch.Tensor, expert_index: torch.Tensor, num_experts: int):
    """(load-balance loss, z-loss, share of routed slots per expert) for router logits (N, E)."""
    probs = logits.softmax(dim=-1)
    share = torch.bincount(expert_index.reshape(-1), minlength=num_experts).to(probs.dtype)
    share = share / expert_index.numel()
    load_balance = num_experts * torch.sum(share * probs.mean(dim=0))
    z_loss = torch.logsumexp(logits, dim=-1).pow(2).mean()
    return load_balance, z_loss, share


class MoELayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_experts, self.top_k = config.num_experts, config.top_k
        self.aux_weight, self.z_weight = config.aux_loss_weight, config.z_loss_weight
        self.router = nn.Linear(config.d_model, config.num_experts, bias=False)
        self.experts = nn.ModuleList(make_mlp(config) for _ in range(config.num_experts))

    def forward(self, x: torch.Tensor):
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, d)
        logits = self.router(tokens).float()  # (N, E), routing in fp32
        top_logits, expert_index = logits.topk(self.top_k, dim=-1)
        weights = top_logits.softmax(dim=-1)  # renormalised over the chosen k
        if not torch.is_grad_enabled():  # inference: no router losses to return
            if tokens.size(0) == 1:  # a decode step: call its k experts directly, summed in dispatch's order
                chosen = sorted(zip(expert_index[0].tolist(), weights[0].to(x.dtype).unbind()), key=lambda c: c[0])
                out = None
                for expert, weight in chosen:
                    y = self.experts[expert](tokens) * weight
                    out = y if out is None else out + y
                return out.reshape(shape)
            return dispatch(tokens, expert_index, weights, self.experts).reshape(shape)
        out = dispatch(tokens, expert_index, weights, self.experts).reshape(shape)
        load_balance, z_loss, share = router_losses(logits, expert_index, self.num_experts)
        aux = {
            "aux_loss": self.aux_weight * load_balance + self.z_weight * z_loss,
            "load_balance": load_balance.detach(),
            "z_loss": z_loss.detach(),
            "expert_share": share.detach(),
        }
        return out, aux


def build_blocks(config: ModelConfig) -> list[nn.Module]:
    return [TransformerBlock(config, mlp=MoELayer(config), window=config.sliding_window) for _ in range(config.n_layers)]
