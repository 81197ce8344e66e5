"""The parallel scan behind Mamba's selective SSM, in pure PyTorch.

Computes the linear recurrence

    h[t] = a[t] * h[t-1] + x[t],      h[-1] = h0 (zeros by default)

for all t at once with the work-efficient (Blelloch) up-sweep / down-sweep over the time axis:
2·log2(T) passes of in-place strided tensor ops, O(T) work, running on CPU, CUDA and MPS with no
compiled extension. The backward pass is the same recurrence run backwards in time:

    g[t] = dL/dh[t] + a[t+1] * g[t+1];   dL/dx[t] = g[t];   dL/da[t] = g[t] * h[t-1]

``scan_reference`` is the slow sequential loop the tests compare against.
"""

from __future__ import annotations

import torch


def _scan_inplace(a: torch.Tensor, x: torch.Tensor) -> None:
    """Inclusive scan along dim 1 of x (B, T, ...), in place; ``a`` is used as scratch."""
    T = x.size(1)
    # up-sweep: after level k, index i with (i+1) divisible by 2^(k+1) holds the scan of its block
    stride = 1
    while stride < T:
        n = T // (2 * stride)
        if n == 0:
            break
        right = slice(2 * stride - 1, 2 * stride * n, 2 * stride)
        left = slice(stride - 1, 2 * stride * n - stride, 2 * stride)
        x[:, right].addcmul_(a[:, right], x[:, left])
        a[:, right].mul_(a[:, left])
        stride *= 2
    # down-sweep: fill in the prefixes of the positions between block ends
    stride //= 2
    while stride >= 1:
        n = (T - stride) // (2 * stride)
        if n > 0:
            target = slice(3 * stride - 1, 3 * stride - 1 + 2 * stride * n, 2 * stride)
            source = slice(2 * stride - 1, 2 * stride - 1 + 2 * stride * n, 2 * stride)
            x[:, target].addcmul_(a[:, target], x[:, source])
        stride //= 2


class _ParallelScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None):
        h = x.clone()
        if h0 is not None:
            h[:, 0].addcmul_(a[:, 0], h0)
        _scan_inplace(a.clone(), h)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        a, h, h0 = ctx.saved_tensors
        # reverse-time recurrence: g[t] = grad[t] + a[t+1] g[t+1]
        a_next = torch.zeros_like(a)
        a_next[:, :-1] = a[:, 1:]
        g = grad_h.flip(1).contiguous()
        _scan_inplace(a_next.flip(1).contiguous(), g)
        g = g.flip(1)
        h_prev = torch.empty_like(h)
        h_prev[:, 1:] = h[:, :-1]
        if h0 is not None:
            h_prev[:, 0] = h0
        else:
            h_prev[:, 0] = 0
        grad_a = g * h_prev
        grad_h0 = g[:, 0] * a[:, 0] if h0 is not None else None
        return grad_a, g, grad_h0


def parallel_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """h[t] = a[t] * h[t-1] + x[t] along dim 1; a, x: (B, T, ...); h0: (B, ...) or None."""
    return _ParallelScan.apply(a.contiguous(), x.contiguous(), h0)


def scan_reference(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The sequential loop, for tests."""
    h = torch.zeros_like(x[:, 0]) if h0 is None else h0
    out = []
    for t in range(x.size(1)):
        h = a[:, t] * h + x[:, t]
        out.append(h)
    return torch.stack(out, dim=1)
