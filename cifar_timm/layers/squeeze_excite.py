"""timm's SEModule with a cheaper squeeze for training: the same parameters and the same function.

`x.mean((2, 3))`'s backward divides the expanded gradient by H * W, a full-size pass over the block's activations.
`x.sum((2, 3)) / (H * W)` computes the same value (ATen's mean is that sum and that division) and divides the
(N, C, 1, 1) gradient instead, leaving the expand lazy. SE forward + backward of (128, 64, 32, 32) fp32
channels_last took ~20% less time on the project CPU (docs/benchmarks.md).
"""
from __future__ import annotations

import torch
from timm.layers import SEModule


class SqueezeExcite(SEModule):
    """Drop-in for timm's `SEModule` (same arguments, same state_dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = x.sum((2, 3), keepdim=True) / (x.shape[-2] * x.shape[-1])
        if self.add_maxpool:
            x_se = 0.5 * x_se + 0.5 * x.amax((2, 3), keepdim=True)
        x_se = self.fc1(x_se)
        x_se = self.act(self.bn(x_se))
        x_se = self.fc2(x_se)
        return x * self.gate(x_se)
