"""The 2x2 average pool with Keras 'same' padding (the pad goes bottom/right and is left out of the mean), with a
hand-written backward at stride 1.

ATen's avg_pool2d backward is slow on a channels_last CPU tensor: one stride-1 pool of (128, 64, 32, 32) fp32
took ~2.5x as long forward+backward as with this backward (docs/benchmarks.md). The gradient of a 2x2 stride-1
mean is itself a 2x2 window sum, of the output gradient divided by each window's cell count, which avg_pool2d's
fast forward kernel computes. The counts are 1, 2 or 4, so the division is exact, and the sum runs over the same
four terms in the same order as ATen's backward: in fp32 the gradients are equal bit for bit
(tests/test_fast_layers.py). In bf16 the window sum is rounded once where ATen rounds after each term, so the two
differ by at most a bf16 ulp.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx
import torch.nn.functional as F


def _stride_one(x: torch.Tensor) -> torch.Tensor:
    # 'same' at stride 1 pads one row/column at the end; pad both ends and drop the leading one instead
    return F.avg_pool2d(x, 2, 1, padding=1, count_include_pad=False)[:, :, 1:, 1:]


def window_cell_counts(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """How many input cells each stride-1 window averages: 4 inside, 2 on the last row or column, 1 in the corner."""
    rows = torch.full((height, 1), 2.0, dtype=like.dtype, device=like.device)
    cols = torch.full((1, width), 2.0, dtype=like.dtype, device=like.device)
    rows[-1] = 1.0
    cols[:, -1] = 1.0
    return rows * cols


class _StrideOneSameAvgPool(torch.autograd.Function):

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return _stride_one(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        height, width = grad.shape[-2:]
        per_cell = grad / window_cell_counts(height, width, grad)
        # input cell (i, j) is in the windows of outputs (i-1..i, j-1..j): a window sum over the zero-padded top/left
        return F.avg_pool2d(per_cell, 2, 1, padding=1, count_include_pad=True, divisor_override=1)[:, :, :-1, :-1]


def keras_same_avg_pool2d_eager(x: torch.Tensor, stride: int) -> torch.Tensor:
    """2x2 average pool with Keras 'same' padding at stride 1 or 2 (shape ceil(H / stride) x ceil(W / stride)), with
    ATen's own backward (TorchScript cannot call an autograd.Function)."""
    if stride == 1:
        return _stride_one(x)
    # ceil_mode lets the last window overhang an odd edge, averaging only the cells inside
    return F.avg_pool2d(x, 2, stride, ceil_mode=True, count_include_pad=False)


@torch.fx.wrap
def keras_same_avg_pool2d(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The same pool with the hand-written backward at stride 1."""
    # jit.trace (ONNX export) would record the autograd.Function as an opaque Python op
    if stride == 1 and not torch.jit.is_tracing():
        return _StrideOneSameAvgPool.apply(x)
    return keras_same_avg_pool2d_eager(x, stride)
