"""Mamba-1 selective state-space block (Gu & Dao, 2023).

Per layer:  x -> in_proj -> (u, z);  u -> causal depthwise conv1d -> silu
            (dt, B, C) = x_proj(u);  delta = softplus(dt_proj(dt))          # input-dependent
            h[t] = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * u[t]      # A = -exp(A_log)
            y[t] = C[t] . h[t] + D * u[t];   out = out_proj(y * silu(z))

Training runs the recurrence with ``trainer.models.scan.selective_scan`` (a chunked parallel
scan in pure PyTorch, any device), or with ``mamba_ssm``'s fused CUDA kernel when it is importable and the input is on
CUDA. Generation uses ``step``: one token, O(1) state (conv window + (d_inner, d_state) SSM state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.config import ModelConfig
from trainer.models.layers import RMSNorm
from trainer.models.scan import selective_scan

try:  # the fused kernel, used automatically on CUDA when installed
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _fused_selective_scan
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _fused_selective_scan = None


@dataclass
class MambaState:
    """Recurrent state of one Mamba layer: the last d_conv-1 conv inputs and the SSM state."""

    conv: torch.Tensor  # (B, d_inner, d_conv - 1)
    ssm: torch.Tensor  # (B, d_inner, d_state)


class MambaMixer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d_inner, n, rank = config.d_inner, config.d_state, config.resolved_dt_rank
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = d_inner, n, config.d_conv, rank
        self.in_proj = nn.Linear(config.d_model, 2 * d_inner, bias=config.bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, config.d_conv, groups=d_inner, bias=True)
        self.x_proj = nn.Linear(d_inner, rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, config.d_model, bias=config.bias)
        for p in (self.A_log, self.D, self.dt_proj.bias, self.dt_proj.weight, self.conv1d.weight, self.conv1d.bias):
            p._no_reinit = True
        self.reset_dt()

    def reset_dt(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """The paper's init: dt log-uniform in [dt_min, dt_max], stored as softplus^-1 in the bias."""
        with torch.no_grad():
            std = self.dt_rank**-0.5
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=1e-4)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
            self.D.fill_(1.0)
            bound = 1 / math.sqrt(self.d_conv)
            nn.init.uniform_(self.conv1d.weight, -bound, bound)
            nn.init.uniform_(self.conv1d.bias, -bound, bound)

    def _ssm_inputs(self, u: torch.Tensor):
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        return delta, A, B, C

    def forward(self, x: torch.Tensor, state: MambaState | None = None) -> torch.Tensor:
        T = x.size(1)
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, Di) each
        u_t = u.transpose(1, 2)  # (B, Di, T)
        prefix = state.conv if state is not None else u_t.new_zeros(u_t.size(0), self.d_inner, self.d_conv - 1)
        padded = torch.cat((prefix.to(u_t.dtype), u_t), dim=2)  # (B, Di, d_conv - 1 + T)
        u = F.silu(F.conv1d(padded, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)).transpose(1, 2)
        delta, A, B, C = self._ssm_inputs(u)
        if state is None and _fused_selective_scan is not None and u.is_cuda:
            y = _fused_selective_scan(
                u.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
                z=z.transpose(1, 2).contiguous(),
            ).transpose(1, 2)
            return self.out_proj(y)
        h0 = state.ssm if state is not None else None
        y, last = selective_scan(u, delta, A, B, C, self.D, h0)
        if state is not None:
            state.conv = padded[:, :, -(self.d_conv - 1):].detach() if self.d_conv > 1 else prefix
            state.ssm = last.detach()
        return self.out_proj(y * F.silu(z))

    def step(self, x: torch.Tensor, state: MambaState) -> torch.Tensor:
        """One token: x (B, d_model) -> (B, d_model), updating ``state`` in place. O(1) in context."""
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, Di)
        window = torch.cat((state.conv, u.unsqueeze(-1)), dim=2)  # (B, Di, d_conv)
        u = F.silu((window * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        state.conv = window[:, :, 1:]
        delta, A, B, C = self._ssm_inputs(u)  # delta (B, Di), B/C (B, N)
        # the state is kept in float32 (or wider) whatever the weights' dtype, as in the parallel scan
        wide = torch.promote_types(u.dtype, torch.float32)
        delta, uf, B, C = delta.to(wide), u.to(wide), B.to(wide), C.to(wide)
        state.ssm = torch.exp(delta.unsqueeze(-1) * A) * state.ssm + (delta * uf).unsqueeze(-1) * B.unsqueeze(1)
        y = torch.matmul(state.ssm, C.unsqueeze(-1)).squeeze(-1) + uf * self.D.to(wide)  # (B, Di)
        return self.out_proj(y.to(u.dtype) * F.silu(z))

    def new_state(self, batch: int, device, dtype=torch.float32) -> MambaState:
        return MambaState(
            conv=torch.zeros(batch, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=torch.float32),
        )


class MambaBlock(nn.Module):
    """x + mixer(norm(x)); Mamba blocks have no separate MLP."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.mixer = MambaMixer(config)

    def forward(self, x: torch.Tensor, start_pos: int = 0, cache: MambaState | None = None):
        if cache is not None and x.size(1) == 1:
            return x + self.mixer.step(self.norm(x)[:, 0], cache).unsqueeze(1), None
        return x + self.mixer(self.norm(x), cache), None

    def new_cache(self, batch: int = 1, device=None, dtype=torch.float32) -> MambaState:
        return self.mixer.new_state(batch, device, dtype)


def build_blocks(config: ModelConfig) -> list[nn.Module]:
    return [MambaBlock(config) for _ in range(config.n_layers)]
