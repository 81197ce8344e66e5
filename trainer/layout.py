"""Weight layout for decoding: float Linear weights stored input-major when that is faster.

Decoding one token multiplies a single row by every weight matrix, so it is bound by how fast the
weights stream from memory. On the CPUs measured here, MKL's fp32 matrix-vector product reads a
weight stored (in, out) — ``x @ W`` — about 25% faster than the (out, in) layout nn.Linear keeps —
``x @ W.T`` —, with no loss for prompt-sized matmuls; for bf16 it is the other way round. So
``prepare_for_decoding`` times both layouts once per (device, dtype) on a layer of the model and
re-lays the float Linear weights out when the transposed form wins. The arithmetic is the same
matmul; only the memory order differs (the results agree to rounding).

Tied output layers keep their shared weight (transposing would duplicate the embedding).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

_CHOICE: dict[tuple, bool] = {}  # (device type, dtype, in, out) -> input-major is faster


class InputMajorLinear(nn.Module):
    """y = x @ weight_t + bias with ``weight_t`` (in_features, out_features) contiguous."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight_t)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, input-major"


def _input_major_faster(weight: torch.Tensor, rounds: int = 3) -> bool:
    """Time both layouts streaming ~64 MiB of weights of this shape (more than a cache holds, as a
    decode step streams the whole model); interleaved rounds, the best of each."""
    key = (weight.device.type, weight.dtype, weight.size(1), weight.size(0))
    if key not in _CHOICE:
        count = max(2, (64 << 20) // (weight.numel() * weight.element_size()))
        plain = [torch.randn_like(weight) for _ in range(count)]
        flipped = [w.t().contiguous() for w in plain]
        x = torch.randn(1, weight.size(1), device=weight.device, dtype=weight.dtype)
        best = {"plain": float("inf"), "flipped": float("inf")}
        for _ in range(rounds):
            for name, fn in (("plain", lambda: [F.linear(x, w) for w in plain]),
                             ("flipped", lambda: [torch.matmul(x, w) for w in flipped])):
                started = time.perf_counter()
                fn()
                if weight.is_cuda:
                    torch.cuda.synchronize()
                best[name] = min(best[name], time.perf_counter() - started)
        _CHOICE[key] = best["flipped"] < 0.9 * best["plain"]
    return _CHOICE[key]


def prepare_for_decoding(model: nn.Module, force: bool | None = None) -> int:
    """Re-lay out the float Linear weights where that decodes faster; returns how many changed.

    ``force`` skips the measurement (True: always, False: never)."""
    elsewhere = {id(p) for name, p in model.named_parameters(remove_duplicate=False) if not name.endswith("lm_head.weight")}
    linears = [(name, m) for name, m in model.named_modules()
               if type(m) is nn.Linear and not (name.endswith("lm_head") and id(m.weight) in elsewhere)]  # not a tied head
    body = [m for name, m in linears if not name.endswith("lm_head")] or [m for _, m in linears]
    if not body:
        return 0
    probe = max(body, key=lambda m: m.weight.numel())  # a typical layer (the head is slow to copy)
    if force is False or (force is None and (probe.weight.numel() < 1 << 16 or not _input_major_faster(probe.weight.detach()))):
        return 0
    names = [name for name, _ in linears]
    del linears, body, probe  # hold no old weights: each is freed as soon as its copy replaces it
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, InputMajorLinear(getattr(parent, child)))
    return len(names)
