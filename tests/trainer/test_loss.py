"""lm_loss: the cross entropy whose gradient is made in the forward pass equals F.cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.models import lm_loss


def reference_loss(logits, targets, mask=None):
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none")
    if mask is None:
        return losses.mean()
    weights = mask.reshape(-1).float()
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


def loss_and_grad(fn, logits, targets, mask=None, scale=1.0):
    x = logits.detach().clone().requires_grad_()
    loss = fn(x, targets, mask)
    (loss * scale).backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.25, 1024.0])  # gradient accumulation divides, a GradScaler multiplies
def test_value_and_gradient_equal_cross_entropy(masked, scale):
    torch.manual_seed(0)
    logits = torch.randn(3, 40, 257) * 5
    targets = torch.randint(0, 257, (3, 40))
    mask = (torch.rand(3, 40) > 0.4) if masked else None
    ours, ours_grad = loss_and_grad(lm_loss, logits, targets, mask, scale)
    ref, ref_grad = loss_and_grad(reference_loss, logits, targets, mask, scale)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-7)
    if masked:  # unmarked targets get no gradient at all
        assert ours_grad.reshape(-1, 257)[~mask.reshape(-1)].abs().max() == 0


def test_a_target_far_below_the_top_keeps_an_exact_finite_loss():
    logits = torch.zeros(2, 1, 50)
    logits[0, 0, 3] = -500.0  # probability exp(-500): underflows to 0 in float32
    logits[1, 0, 7] = 80.0
    targets = torch.tensor([[3], [4]])
    ours, grad = loss_and_grad(lm_loss, logits, targets)
    ref, ref_grad = loss_and_grad(reference_loss, logits, targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_bfloat16_logits_and_evaluation_without_gradients():
    torch.manual_seed(1)
    logits = (torch.randn(2, 16, 64) * 3).to(torch.bfloat16)
    targets = torch.randint(0, 64, (2, 16))
    ours, grad = loss_and_grad(lm_loss, logits, targets)
    ref, ref_grad = loss_and_grad(reference_loss, logits, targets)
    torch.testing.assert_close(ours, ref)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, ref_grad)
    with torch.no_grad():
        torch.testing.assert_close(lm_loss(logits, targets), reference_loss(logits, targets))


def test_non_finite_logits_give_a_non_finite_loss_for_the_trainer_to_skip():
    logits = torch.randn(1, 4, 10)
    logits[0, 2, 5] = float("nan")
    loss, _ = loss_and_grad(lm_loss, logits, torch.randint(0, 10, (1, 4)))
    assert not torch.isfinite(loss)


def test_a_second_backward_is_refused_rather_than_wrong():
    logits = torch.randn(2, 5, 11, requires_grad=True)
    loss = lm_loss(logits, torch.randint(0, 11, (2, 5)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()
