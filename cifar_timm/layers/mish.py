"""Mish, x * tanh(softplus(x)), as one fused kernel: the same function as `F.mish`, several times faster
forward+backward on the project CPU (docs/benchmarks.md).

ATen's CPU mish and mish_backward each evaluate exp, log1p and tanh per element. With e = exp(x) and
n = e (e + 2), tanh(softplus(x)) = n / (n + 2), so one exp and a few multiplies give both the value and the slope;
torch.compile fuses them into one pass over memory (`compiled.CompiledFunction`), the slope is saved for the
backward, and F.mish runs wherever the kernel cannot. Precision: for x > 0 the ratio is taken as 1 - 2 / (n + 2),
which keeps value and gradient within about an ulp of F.mish (tests/test_fast_layers.py); x is clamped at 20
before exp, above which mish(x) = x in fp32 (softplus's own threshold), so nothing overflows.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .compiled import CompiledFunction

_THRESHOLD = 20.0


def _exp_and_ratio(x: torch.Tensor):
    """For x clamped at the threshold: e = exp(x), n = e (e + 2), r = 1 / (n + 2) and t = tanh(softplus(x))."""
    e = torch.exp(x)
    n = e * (e + 2.0)
    r = 1.0 / (n + 2.0)
    t = torch.where(x > 0, 1.0 - 2.0 * r, n * r)
    return e, n, r, t


def mish_and_slope(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mish(x) and d mish / dx = t + x sigmoid(x) (1 - t^2), with 1 - t^2 = 4 (n + 1) r^2 (no cancellation), in one
    pass; both in x's dtype. The clamped x keeps the second term at 0 (not inf * 0) above the threshold, where t is
    exactly 1.0 in fp32 (from x ~ 9 on) and the slope is 1."""
    xf = x.float()
    xc = xf.clamp(max=_THRESHOLD)
    e, n, r, t = _exp_and_ratio(xc)
    slope = t + xc * (e / (e + 1.0)) * (4.0 * (n + 1.0) * r * r)
    return (xf * t).to(x.dtype), slope.to(x.dtype)


_mish_and_slope = CompiledFunction(mish_and_slope)


class _FastMishFn(torch.autograd.Function):
    """Saves the slope, not the input: the backward is one multiply (as cheap as ReLU's), and the exp is paid once.
    In bf16 the slope is rounded once more than ATen's backward rounds (within a bf16 ulp); fp32 is unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y, slope = _mish_and_slope(x)
        ctx.save_for_backward(slope)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        slope, = ctx.saved_tensors
        return grad * slope


@torch.fx.wrap
def fast_mish(x: torch.Tensor) -> torch.Tensor:
    """Mish: the fused kernels where they can run, F.mish elsewhere (the same values within about an ulp)."""
    if not _mish_and_slope.usable:
        return F.mish(x)
    return _FastMishFn.apply(x)


class FastMish(nn.Module):
    """Drop-in for `nn.Mish` (no parameters, so weights are interchangeable); `inplace` is accepted and ignored."""

    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.mish(x)
        else:
            return fast_mish(x)
