"""Grouped convolution that runs narrow groups merged into wider block-diagonal ones where that is faster: same
parameters, same function.

oneDNN's grouped convolution on CPU is slow when each group has fewer channels than a vector register holds (the
16x2d ResNeXts have 2 to 8). Merging `m` neighbouring groups into one whose weight is block-diagonal does `m` times
the arithmetic but runs vectorised:
* bf16 with AMX (Intel Xeon): every group of at most 4 channels merged into one dense conv took about half the
  time forward+backward (docs/benchmarks.md).
* bf16 without AMX (AMD EPYC with AVX-512 bf16): the dense conv was the slowest choice for every stage; groups
  merged up to 8 channels were fastest (se_mxresnext29_16x2d's grouped convs, fwd+bwd: 216 ms as before, 133-151
  ms merged; a whole training step 1.14x).
* fp32 (AVX2 machine, 8 floats a register): groups merged up to 8 channels, not further; the dense conv lost there
  (forward+backward of se_mxresnext29_16x2d's stride-1 grouped convs: 170 ms grouped, 326 ms dense).
The weight keeps its grouped shape (out, in / groups, k, k), so weights are interchangeable with nn.Conv2d; the
merged weight is built each call (a few KiB) and its gradient lands on the diagonal blocks only.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..cpuinfo import cpu_has_flag

# bf16 on a CPU with AMX: groups of at most this many channels all merge into one dense conv (measured per stage
# of xresnext29_16x2d).
DENSE_MAX_GROUP_CHANNELS = 4
# fp32 on CPU, and bf16 on a CPU without AMX: narrower groups merge up to this many channels (an AVX2 register of
# floats; measured again for bf16 on AVX-512).
FP32_MERGED_GROUP_CHANNELS = 8
BF16_MERGED_GROUP_CHANNELS = 8


def block_diagonal_weight(weight: torch.Tensor, groups: int, merge: Optional[int] = None) -> torch.Tensor:
    """(out, in / g, kh, kw) weight of `groups` groups -> the weight of `groups / merge` groups, each `merge` of the
    old ones with their blocks on its diagonal and zeros elsewhere; merge=None (all groups) gives the dense
    (out, in, kh, kw) weight."""
    merge = groups if merge is None else merge
    if merge < 1 or groups % merge:
        raise ValueError(f'cannot merge {groups} groups {merge} at a time: merge must divide groups')
    out_chs, in_per_group, kh, kw = weight.shape
    blocks = weight.reshape(groups // merge, merge, out_chs // groups, 1, in_per_group, kh, kw)
    eye = torch.eye(merge, dtype=weight.dtype, device=weight.device).reshape(1, merge, 1, merge, 1, 1, 1)
    return (blocks * eye).reshape(out_chs, merge * in_per_group, kh, kw)


def _cpu_bf16(x: torch.Tensor) -> bool:
    if x.device.type != 'cpu':
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled('cpu') and torch.get_autocast_dtype('cpu') == torch.bfloat16


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles for bf16 (False where the OS does not say)."""
    return cpu_has_flag('amx_bf16')


def merged_groups(x: torch.Tensor, weight: torch.Tensor, groups: int) -> int:
    """How many neighbouring groups to run as one on this input: 1 keeps the grouped conv, `groups` is dense."""
    in_per_group = weight.shape[1]
    if groups == 1 or x.device.type != 'cpu' or torch.jit.is_tracing():
        return 1  # GPUs: cuDNN's grouped kernels are fine; a trace (ONNX) keeps the plain grouped conv
    if _cpu_bf16(x):
        if cpu_has_amx():
            return groups if in_per_group <= DENSE_MAX_GROUP_CHANNELS else 1
        channels = BF16_MERGED_GROUP_CHANNELS
    elif x.dtype == torch.float32:
        channels = FP32_MERGED_GROUP_CHANNELS
    else:
        return 1
    merge = 1  # doubled while the merged group stays within `channels` (fp32: 6 -> 12 channels was slower)
    while 2 * merge * in_per_group <= channels and groups % (2 * merge) == 0:
        merge *= 2
    return merge


@torch.fx.wrap
def grouped_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Tuple[int, int],
                   padding: Tuple[int, int], groups: int) -> torch.Tensor:
    merge = merged_groups(x, weight, groups)
    if merge > 1:
        return F.conv2d(x, block_diagonal_weight(weight, groups, merge), bias, stride, padding, 1, groups // merge)
    return F.conv2d(x, weight, bias, stride, padding, 1, groups)


class GroupedConv2d(nn.Conv2d):
    """nn.Conv2d (integer padding, no dilation) whose narrow groups may run merged into block-diagonal ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._conv_forward(x, self.weight, self.bias)
        else:
            return grouped_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)
