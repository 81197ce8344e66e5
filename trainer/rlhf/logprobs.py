"""Log-probabilities of responses under a model, through any architecture's own forward.

A batch is right-padded token ids (B, T) with a response mask (B, T): 1 where the token belongs to
the response being scored (the assistant turn), 0 for the prompt and padding. The log-probability
of token t is read from the logits at t-1, so the mask is shifted with the targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_batch(sequences: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], pad_id: int = 0,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ids and masks to the longest sequence: (B, T) long tensors."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, (seq, m) in enumerate(zip(sequences, masks)):
        ids[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[i, : len(m)] = torch.as_tensor(list(m), dtype=torch.long)
    return ids.to(device), mask.to(device)


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(per-token log-probs (B, T-1), target mask (B, T-1) as float, aux) of ``ids[:, 1:]``.

    Entries outside the response are zero. ``aux`` is the model's auxiliary output (MoE router
    losses), so a trainer can add the load-balancing loss."""
    logits, aux = model(ids[:, :-1])
    targets = ids[:, 1:]
    logp = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    target_mask = mask[:, 1:].to(logp.dtype)
    return logp * target_mask, target_mask, aux


def sequence_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """log pi(response | prompt) summed over the response tokens (B,), or averaged when ``average``."""
    logp, target_mask, _ = token_logprobs(model, ids, mask)
    total = logp.sum(-1)
    return total / target_mask.sum(-1).clamp(min=1.0) if average else total


@torch.no_grad()
def batched_sequence_logprobs(model, sequences: Sequence[Sequence[int]], masks: Sequence[Sequence[int]],
                              batch_size: int = 16, average: bool = False, device="cpu") -> torch.Tensor:
    """Sequence log-probs of many examples without gradients (reference caching, evaluation)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(sequences), batch_size):
        ids, mask = pad_batch(sequences[start : start + batch_size], masks[start : start + batch_size], device=device)
        out.append(sequence_logprobs(model, ids, mask, average=average).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)
