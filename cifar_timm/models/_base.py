"""`CifarClassifier`: timm's uniform model surface, written once for every cifar-timm family.

timm users and tools rely on `forward_features`, `forward_head(x, pre_logits=False)`, `forward`,
`get_classifier`, `reset_classifier`, `set_grad_checkpointing`, `num_features` and `head_hidden_size`
(cf. timm/models/resnet.py). A family subclasses `CifarClassifier`, builds `stem` (optional), `stages` (an
`nn.Sequential`, one entry per feature level) and, optionally, `pre_logits`, then calls `init_head`; it overrides
only what differs (its `group_matcher`, a `forward_features` with a final norm or without a stem).
Residual families call `zero_init_residual_branches` for timm's `zero_init_last` option.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from timm.layers import ClassifierHead
from timm.models import checkpoint_seq

__all__ = ['CifarClassifier']


class CifarClassifier(nn.Module):
    """Stem -> stages -> (pre_logits) -> timm `ClassifierHead`, with timm's model API on top."""

    def __init__(self, num_classes: int, in_chans: int, drop_rate: float):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        # a module between the features and the head's pooling (VGG's and CIFARnet's flatten-MLP); None: none
        self.pre_logits: Optional[nn.Module] = None

    def init_head(self, in_chs: int, global_pool: str) -> None:
        """The classifier head (pool, dropout `drop_rate`, fc to `num_classes`) on `in_chs` channels."""
        self.head = ClassifierHead(in_chs, self.num_classes, pool_type=global_pool, drop_rate=self.drop_rate)
        self.head_hidden_size = _pooled_width(self.head)

    def zero_init_residual_branches(self) -> None:
        """Start every residual branch at zero: each block with a `zero_init_last` hook zeroes its last layer."""
        for m in self.modules():
            if hasattr(m, 'zero_init_last'):
                m.zero_init_last()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        # Older timm's ClassifierHead.reset takes no device/dtype: build the new layer, then move it beside the rest.
        reference = next(self.parameters(), None)
        self.head.reset(num_classes, global_pool)
        if reference is not None:
            self.head.to(device=reference.device, dtype=reference.dtype)
        self.head_hidden_size = _pooled_width(self.head)

    def forward_stages(self, x: torch.Tensor, flatten: bool = False) -> torch.Tensor:
        """Run `stages`, gradient-checkpointed per stage (per block with `flatten`) when enabled."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x, flatten=flatten)
        return self.stages(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.pre_logits is not None:
            x = self.pre_logits(x)
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _pooled_width(head: ClassifierHead) -> int:
    """Width after global pooling (2x the channels for cat-pooling); newer timm stores it as head.num_features."""
    return head.in_features * head.global_pool.feat_mult()
