"""Mamba's selective scan in pure PyTorch: a chunked, recomputing parallel scan.

The recurrence, per channel d and state n (A is diagonal):

    h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * u[t]        h[-1] = h0 (zeros by default)
    y[t] = C[t] . h[t] + D * u[t]

``selective_scan`` walks the sequence in chunks. Inside a chunk the recurrence is solved for all
positions at once with the work-efficient (Blelloch) up-sweep/down-sweep over time, as in-place
strided tensor ops (``linear_scan_``); the state is carried from chunk to chunk. Only the inputs
and the chunk-boundary states are kept for the backward pass, which walks the chunks in reverse,
recomputes each chunk's states and runs the adjoint recurrence

    g[t] = dL/dh[t] + exp(delta[t+1] * A) * g[t+1]

with the same scan, mirrored. So memory is O(T·d_inner) plus one chunk of (chunk, d_inner, d_state),
each chunk's working set stays cache-sized on CPU, and it runs on CPU, CUDA and MPS with no
compiled extension. ``selective_scan_reference`` is the plain autograd loop the tests compare with.
"""

from __future__ import annotations

import torch


def _pairs(T: int, stride: int, count: int, first_right: int, reverse: bool) -> tuple[slice, slice]:
    """Slices (targets, sources) of ``count`` pairs at distance ``stride``, 2*stride apart.

    Forward: targets first_right + 2*stride*m, sources stride before them. Reverse: the mirror
    image (index i <-> T-1-i), which is again a pair of ascending slices.
    """
    if not reverse:
        start = first_right
        return (slice(start, start + 2 * stride * (count - 1) + 1, 2 * stride),
                slice(start - stride, start - stride + 2 * stride * (count - 1) + 1, 2 * stride))
    last = T - 1 - first_right  # mirror of the first target; mirrored targets descend from here
    start = last - 2 * stride * (count - 1)
    return (slice(start, last + 1, 2 * stride), slice(start + stride, last + stride + 1, 2 * stride))


def linear_scan_(a: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """In place: x[t] <- a[t] * x[t-1] + x[t] along dim 1 (or x[t] <- a[t] * x[t+1] + x[t] when
    ``reverse``). ``a`` is overwritten (scratch). Shapes (B, T, ...). Returns x."""
    T = x.size(1)
    stride = 1
    while 2 * stride <= T:  # up-sweep: block ends accumulate their block
        count = T // (2 * stride)
        target, source = _pairs(T, stride, count, 2 * stride - 1, reverse)
        x[:, target].addcmul_(a[:, target], x[:, source])
        a[:, target].mul_(a[:, source])
        stride *= 2
    stride //= 2
    while stride >= 1:  # down-sweep: positions between block ends take the prefix before them
        count = (T - stride) // (2 * stride)
        if count > 0:
            target, source = _pairs(T, stride, count, 3 * stride - 1, reverse)
            x[:, target].addcmul_(a[:, target], x[:, source])
        stride //= 2
    return x


LOG2E = 1.4426950408889634


def _chunk_states(u, delta, A2, B, h_before):
    """States h (B, t, N, Di) of one chunk given the state before it; returns (h, decay).

    Layout (B, t, N, Di) keeps d_inner innermost, so the sums over N below vectorise over Di.
    A2 = A * log2(e): exp2 is several times faster than exp on CPU.
    """
    decay = torch.exp2(delta.unsqueeze(2) * A2)  # exp(delta * A), (B, t, N, Di)
    h = B.unsqueeze(-1) * (delta * u).unsqueeze(2)  # delta * B * u, (B, t, N, Di)
    h[:, 0].addcmul_(decay[:, 0], h_before)
    linear_scan_(decay.clone(), h)
    return h, decay


class _SelectiveScan(torch.autograd.Function):
    """Inputs u, delta (B, T, Di); A2 (N, Di); B, C (B, T, N); D (Di,); h0 (B, N, Di) or None."""

    @staticmethod
    def forward(ctx, u, delta, A2, B, C, D, h0, chunk):
        batch, T, d_inner = u.shape
        state = h0 if h0 is not None else u.new_zeros(batch, A2.size(0), d_inner)
        boundaries = []
        y = torch.empty_like(u)
        for start in range(0, T, chunk):
            end = min(T, start + chunk)
            boundaries.append(state)
            h, _ = _chunk_states(u[:, start:end], delta[:, start:end], A2, B[:, start:end], state)
            y[:, start:end] = (h * C[:, start:end].unsqueeze(-1)).sum(2)  # C . h, (B, t, Di)
            state = h[:, -1].clone()
        y.addcmul_(u, D)
        ctx.save_for_backward(u, delta, A2, B, C, D, torch.stack(boundaries))
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        return y, state

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u, delta, A2, B, C, D, boundaries = ctx.saved_tensors
        chunk, T = ctx.chunk, u.size(1)
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A = torch.zeros_like(A2)  # accumulated with respect to A, returned for A2 = A * log2(e)
        grad_D = (grad_y * u).sum(dim=(0, 1))
        carry = grad_last  # dL/dh at this chunk's last position coming from later positions
        A = A2 / LOG2E
        starts = list(range(0, T, chunk))
        for index in reversed(range(len(starts))):
            s, e = starts[index], min(T, starts[index] + chunk)
            us, ds, Bs, Cs, gy = u[:, s:e], delta[:, s:e], B[:, s:e], C[:, s:e], grad_y[:, s:e]
            h_before = boundaries[index]
            h, decay = _chunk_states(us, ds, A2, Bs, h_before)
            grad_C[:, s:e] = (h * gy.unsqueeze(2)).sum(-1)
            g = Cs.unsqueeze(-1) * gy.unsqueeze(2)  # dL/dh from y, (B, t, N, Di)
            if carry is not None:
                g[:, -1] += carry
            shifted = torch.empty_like(decay)
            shifted[:, :-1] = decay[:, 1:]
            shifted[:, -1] = 0
            linear_scan_(shifted, g, reverse=True)  # g[t] += decay[t+1] * g[t+1]
            carry = decay[:, 0] * g[:, 0]  # flows into the previous chunk's last state
            # dL/d(delta * A) = g * h[t-1] * decay; reuse h's storage for h[t-1]
            h_prev = torch.cat((h_before.unsqueeze(1), h[:, :-1]), dim=1)
            decay_grad = h_prev.mul_(g).mul_(decay)
            gB_inner = (g * Bs.unsqueeze(-1)).sum(2)  # sum_n g * B, (B, t, Di)
            grad_delta[:, s:e] = (decay_grad * A).sum(2) + gB_inner * us
            grad_u[:, s:e] = gB_inner * ds + gy * D
            grad_B[:, s:e] = (g * (ds * us).unsqueeze(2)).sum(-1)
            grad_A += (decay_grad * ds.unsqueeze(2)).sum(dim=(0, 1))
        grad_h0 = carry if ctx.has_h0 else None
        return grad_u, grad_delta, grad_A / LOG2E, grad_B, grad_C, grad_D, grad_h0, None


def default_chunk(batch: int, d_inner: int, d_state: int) -> int:
    """A power-of-two chunk whose (batch, chunk, d_state, d_inner) block is about 2 MB (fits in
    L2/L3 on CPUs; measured faster than longer chunks at the tiny shape), at least 8 steps."""
    per_step = max(1, batch * d_inner * d_state)
    chunk = 8
    while chunk * 2 * per_step <= (1 << 19) and chunk < 256:
        chunk *= 2
    return chunk


def selective_scan(u, delta, A, B, C, D, h0=None, chunk: int | None = None):
    """y (B, T, Di) and the last state (B, Di, N) of the selective SSM (see module docstring).

    u, delta: (B, T, Di); A: (Di, N) (negative); B, C: (B, T, N); D: (Di,); h0: (B, Di, N) or None.
    Computed in float32 (or float64 for float64 input) whatever the input dtype.
    """
    dtype = u.dtype
    f = torch.promote_types(dtype, torch.float32)
    chunk = chunk or default_chunk(u.size(0), u.size(2), A.size(1))
    A2 = (A.to(f) * LOG2E).t().contiguous()  # (N, Di)
    h0 = None if h0 is None else h0.to(f).transpose(1, 2).contiguous()  # (B, N, Di)
    y, last = _SelectiveScan.apply(
        u.to(f).contiguous(), delta.to(f).contiguous(), A2, B.to(f).contiguous(),
        C.to(f).contiguous(), D.to(f), h0, chunk,
    )
    return y.to(dtype), last.transpose(1, 2)


def selective_scan_reference(u, delta, A, B, C, D, h0=None):
    """The sequential loop with plain autograd, for tests."""
    h = u.new_zeros(u.size(0), u.size(2), A.size(1)) if h0 is None else h0
    ys = []
    for t in range(u.size(1)):
        h = torch.exp(delta[:, t].unsqueeze(-1) * A) * h + (delta[:, t] * u[:, t]).unsqueeze(-1) * B[:, t].unsqueeze(1)
        ys.append((h * C[:, t].unsqueeze(1)).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1), h


def scan_reference(a: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """x[t] <- a[t] x[t-1] + x[t] sequentially (or from the end when ``reverse``), for tests."""
    out = x.clone()
    order = range(x.size(1) - 2, -1, -1) if reverse else range(1, x.size(1))
    for t in order:
        out[:, t] = out[:, t] + a[:, t] * out[:, t + (1 if reverse else -1)]
    return out
