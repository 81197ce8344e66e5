"""The preference losses, each a plain function of log-probabilities (tested against TRL's).

Notation: ``pi_*`` are sequence log-probs under the policy, ``ref_*`` under the frozen reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al., 2023): -log sigma(beta [(pi(y+) - ref(y+)) - (pi(y-) - ref(y-))]).

    Returns (per-pair losses, chosen rewards, rejected rewards); rewards are beta * log-ratios.
    ``label_smoothing`` > 0 is conservative DPO (the labels are flipped with that probability).
    At initialisation (policy = reference) every loss is ln 2."""
    chosen_ratio = pi_chosen - ref_chosen
    rejected_ratio = pi_rejected - ref_rejected
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def kto_reference_point(pi_mismatched: torch.Tensor, ref_mismatched: torch.Tensor) -> torch.Tensor:
    """z0: the batch's KL(pi || ref) estimated on mismatched (prompt, other response) pairs,
    clamped at zero and detached (no gradient flows through the reference point)."""
    return (pi_mismatched - ref_mismatched).mean().detach().clamp(min=0)


def kto_loss(pi_desirable: torch.Tensor, ref_desirable: torch.Tensor, pi_undesirable: torch.Tensor,
             ref_undesirable: torch.Tensor, z0: torch.Tensor, beta: float = 0.1, lambda_d: float = 1.0,
             lambda_u: float = 1.0) -> torch.Tensor:
    """KTO (Ethayarajh et al., 2024) per-example losses, desirable first then undesirable:
    lambda_D (1 - sigma(beta (r - z0))) and lambda_U (1 - sigma(beta (z0 - r))), r = pi(y) - ref(y)."""
    desirable = lambda_d * (1 - torch.sigmoid(beta * ((pi_desirable - ref_desirable) - z0)))
    undesirable = lambda_u * (1 - torch.sigmoid(beta * (z0 - (pi_undesirable - ref_undesirable))))
    return torch.cat((desirable, undesirable), 0)


def kto_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """(lambda_D, lambda_U) from the label imbalance: lambda_D n_D = lambda_U n_U, the paper's
    recommended ratio of 1 (within its [1, 4/3] range), with lambda_U = 1. Thumbs are mostly one
    kind, so the rarer kind's examples weigh more."""
    if n_desirable == 0 or n_undesirable == 0:
        return 1.0, 1.0
    return n_undesirable / n_desirable, 1.0


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Reward-model loss -log sigma(r+ - r- - margin), mean over pairs (margin as in Llama 2)."""
    return -F.logsigmoid(r_chosen - r_rejected - margin).mean()


# ---- policy gradient ----------------------------------------------------------------------------


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens.

    rewards, values, mask: (B, T); positions with mask 0 are ignored (the value beyond the last
    response token is 0). Returns (advantages, returns), zero outside the mask.
    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lambda A_{t+1}."""
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = adv * m
        # skip padding: carry the next real step's value and advantage through masked positions
        next_value = torch.where(m > 0, values[:, t], next_value)
        next_adv = torch.where(m > 0, adv, next_adv)
    returns = (advantages + values) * mask
    return advantages, returns


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate: -min(rho A, clip(rho, 1-eps, 1+eps) A), masked mean; also the clip fraction."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    clip_fraction = masked_mean(((ratio - 1).abs() > clip).float(), mask)
    return loss, clip_fraction.detach()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.2) -> torch.Tensor:
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: each reward normalised within its group of completions of one prompt,
    (r - mean) / (std + eps); a group whose completions all score the same gets zero advantage."""
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True, unbiased=False) if group_size > 1 else torch.zeros_like(mean)
    return ((grouped - mean) / (std + eps)).view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased, non-negative KL(pi || ref) estimator exp(ref - pi) - (ref - pi) - 1 (GRPO)."""
    diff = ref_logp - logp
    return torch.exp(diff) - diff - 1
