"""Grouped convolution that runs as a dense, block-diagonal one where that is faster: same parameters, same
function.

oneDNN's bf16 grouped convolution on CPU is slow when each group has very few channels (the 16x2d ResNeXts have
2 to 8): a dense conv over the block-diagonal weight does up to `groups` times the arithmetic yet, for 2 channels
a group, took about half the time forward+backward on the project CPU (docs/benchmarks.md). The weight keeps its
grouped shape (out, in / groups, k, k), so weights are interchangeable with nn.Conv2d; the dense weight is built
each call (a few KiB) and its gradient lands on the diagonal blocks only.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

# Channels per group at or below which the dense form wins (bf16 on CPU); measured per stage of xresnext29_16x2d.
DENSE_MAX_GROUP_CHANNELS = 4


def block_diagonal_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(out, in / g, kh, kw) grouped weight -> (out, in, kh, kw) dense weight, zero outside the group blocks."""
    out_chs, in_per_group, kh, kw = weight.shape
    blocks = weight.reshape(groups, out_chs // groups, 1, in_per_group, kh, kw)
    eye = torch.eye(groups, dtype=weight.dtype, device=weight.device).reshape(groups, 1, groups, 1, 1, 1)
    return (blocks * eye).reshape(out_chs, groups * in_per_group, kh, kw)


def _cpu_bf16(x: torch.Tensor) -> bool:
    if x.device.type != 'cpu':
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled('cpu') and torch.get_autocast_dtype('cpu') == torch.bfloat16


def dense_is_faster(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    return groups > 1 and weight.shape[1] <= DENSE_MAX_GROUP_CHANNELS and _cpu_bf16(x)


@torch.fx.wrap
def grouped_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Tuple[int, int],
                   padding: Tuple[int, int], groups: int) -> torch.Tensor:
    if dense_is_faster(x, weight, groups):
        return F.conv2d(x, block_diagonal_weight(weight, groups), bias, stride, padding)
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


class GroupedConv2d(nn.Conv2d):
    """nn.Conv2d (integer padding, no dilation) whose grouped form may run as the block-diagonal dense conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._conv_forward(x, self.weight, self.bias)
        else:
            return grouped_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)
