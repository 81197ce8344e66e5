"""Next-token cross entropy whose gradient is computed in the forward pass.

``F.cross_entropy`` stores the (N, vocab) log-probabilities for its backward, then builds a
zero-filled (N, vocab) one-hot gradient and runs the log-softmax backward over both: four passes
over the largest tensor of a small model's step. The gradient of mean cross entropy is simply
``(softmax(logits) - one_hot(target)) * weight`` per row, so one softmax pass yields both the loss
and that gradient; the backward only scales it by the incoming gradient. Same values as
``F.cross_entropy`` (tests/trainer/test_loss.py), fewer passes over memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this target probability -log(p) loses precision (float32 underflows near 1e-38); such rows
# take their loss from an exact log-sum-exp instead. They are rare: a target ~69 nats below the top.
_TINY_PROBABILITY = 1e-30


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """sum_i weight_i * (logsumexp(logits_i) - logits_i[target_i]); logits (N, V) float32."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            grad = torch.softmax(logits, dim=-1)  # becomes the gradient in place below
            rows = torch.arange(logits.size(0), device=logits.device)
            target_p = grad[rows, targets]
            losses = -target_p.log()
            tiny = target_p < _TINY_PROBABILITY
            if bool(tiny.any()):
                where = tiny.nonzero().squeeze(1)
                losses[where] = torch.logsumexp(logits[where], dim=-1) - logits[where, targets[where]]
            grad[rows, targets] = target_p - 1.0
            ctx.save_for_backward(grad, weights)
            ctx.used = False
            return (losses * weights).sum()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.used:  # the gradient was scaled in place (below): a second backward would be wrong
            raise RuntimeError("lm_loss's backward cannot run twice (retain_graph is not supported)")
        ctx.used = True
        grad, weights = ctx.saved_tensors
        return grad.mul_((weights * grad_output).unsqueeze(1)), None, None


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross entropy; ``loss_mask`` (B, T) keeps only the marked targets."""
    flat_logits = logits.reshape(-1, logits.size(-1)).float()
    flat_targets = targets.reshape(-1)
    if loss_mask is None:
        weights = torch.full_like(flat_targets, 1.0 / max(1, flat_targets.numel()), dtype=torch.float32)
    else:
        mask = loss_mask.reshape(-1).to(torch.float32)
        weights = mask / mask.sum().clamp(min=1.0)
    if not (torch.is_grad_enabled() and flat_logits.requires_grad):  # evaluation: nothing to keep
        return (F.cross_entropy(flat_logits, flat_targets, reduction="none") * weights).sum()
    return _SoftmaxCrossEntropy.apply(flat_logits, flat_targets, weights)
