"""DPO and KTO against TRL's own trainers on the same log-probabilities; the policy-gradient pieces.

TRL's loss lives inside ``DPOTrainer._compute_loss`` / ``KTOTrainer._compute_loss``; we call those
methods themselves, with the per-token log-probs our nano model computed standing in for the
fused LM head's output, so both sides see exactly the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from trainer.models import build_model, preset_config
from trainer.rlhf.logprobs import pad_batch, sequence_logprobs, token_logprobs
from trainer.rlhf.losses import (
    dpo_loss,
    gae,
    group_advantages,
    kto_loss,
    kto_reference_point,
    kto_weights,
)


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x

    gather = gather_for_metrics


class _FusedHeadOutput:
    """What TRL's models return with ``fused_lm_head=True``: per-token log-probs of the labels."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        self.log_probs = log_probs
        self.entropy = torch.zeros_like(log_probs)
        self.mean_logits = torch.zeros_like(log_probs)
        self.is_top1 = torch.zeros_like(log_probs, dtype=torch.bool)
        self.aux_loss = None


def _trl_self(**fields):
    base = dict(model=SimpleNamespace(training=True), accelerator=_Accelerator(), aux_loss_enabled=False,
                precompute_ref_logps=True, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
                _total_train_tokens=0, _tp_size=1)
    base.update(fields)
    return SimpleNamespace(**base)


def _model_logprobs(seed: int, batch: int):
    """Per-token log-probs (B, T-1) and the masks of a random nano model on random completions."""
    torch.manual_seed(seed)
    config = preset_config("nano", "dense", vocab_size=97, n_layers=2, d_model=64, n_heads=4)
    model = build_model(config).eval()
    seqs, masks = [], []
    for i in range(batch):
        prompt, reply = 3 + i % 4, 4 + (i * 3) % 6
        seqs.append(torch.randint(16, 97, (prompt + reply,)).tolist())
        masks.append([0] * prompt + [1] * reply)
    ids, mask = pad_batch(seqs, masks)
    with torch.no_grad():
        logp, _, _ = token_logprobs(model, ids, mask)
        seq = sequence_logprobs(model, ids, mask)
    return ids, mask, logp.double(), seq.double()


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_trl(beta):
    from trl.trainer.dpo_trainer import DPOTrainer

    n = 6
    ids, mask, policy_tok, policy_seq = _model_logprobs(0, 2 * n)
    _, _, ref_tok, ref_seq = _model_logprobs(1, 2 * n)
    ours, _, _ = dpo_loss(policy_seq[:n], policy_seq[n:], ref_seq[:n], ref_seq[n:], beta)
    trl_self = _trl_self(beta=beta, ld_alpha=None, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
                         loss_weights=[1.0], label_smoothing=0.0, use_weighting=False, args=SimpleNamespace())
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": mask,
              "ref_chosen_logps": ref_seq[:n], "ref_rejected_logps": ref_seq[n:]}
    theirs = DPOTrainer._compute_loss(trl_self, lambda **kw: _FusedHeadOutput(policy_tok), inputs, False)
    assert abs(float(ours.mean()) - float(theirs)) < 1e-6
    assert float(ours.mean()) > 0


def test_dpo_loss_at_initialisation_is_ln2():
    _, _, _, seq = _model_logprobs(2, 8)
    losses, chosen, rejected = dpo_loss(seq[:4], seq[4:], seq[:4].clone(), seq[4:].clone(), beta=0.1)
    assert torch.allclose(losses, torch.full_like(losses, math.log(2)), atol=1e-12)
    assert torch.all(chosen == 0) and torch.all(rejected == 0)


@pytest.mark.parametrize("labels", [[1, 1, 0, 1, 0, 1], [1, 0, 0, 0, 0, 0]])
def test_kto_loss_matches_trl(labels):
    from trl.trainer.kto_trainer import KTOTrainer

    n = len(labels)
    ids, mask, policy_tok, policy_seq = _model_logprobs(3, n)
    _, _, _, ref_seq = _model_logprobs(4, n)
    _, _, _, kl_policy = _model_logprobs(5, n)  # log-probs of the mismatched (prompt, other completion) pairs
    kl_ref = kl_policy - torch.linspace(0.1, 0.5, n, dtype=kl_policy.dtype)  # a positive KL: the clamp keeps z0
    good = torch.tensor(labels, dtype=torch.bool)
    lambda_d, lambda_u = kto_weights(int(good.sum()), int((~good).sum()))
    z0 = kto_reference_point(kl_policy, kl_ref)
    assert z0 > 0
    ours = kto_loss(policy_seq[good], ref_seq[good], policy_seq[~good], ref_seq[~good], z0, 0.1, lambda_d, lambda_u)
    trl_self = _trl_self(beta=0.1, calculate_KL=True, loss_type="kto", desirable_weight=lambda_d,
                         undesirable_weight=lambda_u, _compute_kl_logps=lambda model, batch: kl_policy)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": mask,
              "label": torch.tensor(labels), "ref_logps": ref_seq, "ref_KL_logps": kl_ref}
    theirs = KTOTrainer._compute_loss(trl_self, lambda **kw: _FusedHeadOutput(policy_tok), inputs, False)
    assert abs(float(ours.mean()) - float(theirs)) < 1e-6


def test_kto_weights_follow_the_label_imbalance():
    assert kto_weights(10, 10) == (1.0, 1.0)
    lambda_d, lambda_u = kto_weights(2, 8)  # few thumbs-up: each weighs more
    assert lambda_d * 2 == pytest.approx(lambda_u * 8)
    assert kto_weights(0, 5) == (1.0, 1.0)


def test_kto_reference_point_is_clamped_and_detached():
    pi = torch.tensor([-5.0, -6.0], requires_grad=True)
    z0 = kto_reference_point(pi, torch.tensor([-4.0, -4.0]))
    assert float(z0) == 0.0 and not z0.requires_grad


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.3
    d1 = 0.0 + 0.3 - 0.4
    d0 = 0.0 + 0.4 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert torch.allclose(adv[0, :3], torch.tensor([a0, a1, a2]))
    assert adv[0, 3] == 0 and ret[0, 3] == 0


def test_group_advantages_normalise_within_each_prompt():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    adv = group_advantages(rewards, 4)
    assert adv[0] > 0 and torch.all(adv[1:4] < 0)
    assert abs(float(adv[:4].mean())) < 1e-6
    assert torch.all(adv[4:] == 0)  # all completions equal: nothing to learn from this group
