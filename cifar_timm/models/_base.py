"""`CifarClassifier`: timm's uniform model surface, written once for every cifar-timm family.

timm users and tools rely on `forward_features`, `forward_head(x, pre_logits=False)`, `forward`,
`get_classifier`, `reset_classifier`, `set_grad_checkpointing`, `num_features`, `head_hidden_size` and, since
timm 1.0, the feature API `forward_intermediates` / `prune_intermediate_layers` (cf. timm/models/resnet.py,
resnetv2.py). A family subclasses `CifarClassifier`, builds `stem` (optional), `stages` (an `nn.Sequential`, one
entry per feature level, i.e. per `feature_info` entry) and, optionally, `pre_logits`, then calls `init_head`; it
overrides only what differs (its `group_matcher`; `forward_norm` / `remove_norm` for a final norm after the last
stage; `checkpoint_blocks` for deep stages). Residual families call `zero_init_residual_branches` for timm's
`zero_init_last` option.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import ClassifierHead
from timm.models import checkpoint_seq
from timm.models._features import feature_take_indices

__all__ = ['CifarClassifier']


class CifarClassifier(nn.Module):
    """Stem -> stages -> (final norm) -> (pre_logits) -> timm `ClassifierHead`, with timm's model API on top.

    Feature level i of `forward_intermediates`, `prune_intermediate_layers` and `features_only` is the output of
    `stages[i]`, described by `feature_info[i]`.
    """
    # gradient checkpointing per block instead of per stage (the ResNets' stages are tens of blocks deep)
    checkpoint_blocks: bool = False

    def __init__(self, num_classes: int, in_chans: int, drop_rate: float):
        super().__init__()
        # registered first, so a family that has a stem replaces it in place: a model without one runs the same code
        self.stem: nn.Module = nn.Identity()
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

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        """Run `stages`, gradient-checkpointed per stage (per block with `checkpoint_blocks`) when enabled."""
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.stages, x, flatten=self.checkpoint_blocks)
        return self.stages(x)

    def forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm(-act) after the last stage; none unless a family has one (pre-activation ResNets)."""
        return x

    def remove_norm(self) -> None:
        """Drop the final norm (for `prune_intermediate_layers`); a family with one replaces it by Identity."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_norm(self.forward_stages(self.stem(x)))

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The features and the stage outputs asked for, as timm's models give them.

        Args:
            x: input images.
            indices: stage outputs to return: the last n for an int, all for None, these for a sequence (negative
                ones count from the end).
            norm: apply the final norm to the last stage's output (the other stages have none to apply).
            stop_early: run no stage after the last one asked for.
            output_fmt: 'NCHW', the only layout these convnets have.
            intermediates_only: return only the stage outputs.

        Returns:
            `(features, intermediates)`, features being `forward_features`' output when every stage ran; or the
            intermediates alone.
        """
        assert output_fmt == 'NCHW', 'Output shape must be NCHW.'
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[:max_index + 1]
        x = self.stem(x)
        for feat_idx, stage in enumerate(stages):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage if self.checkpoint_blocks else [stage], x)  # as forward_stages does
            else:
                x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.forward_norm(x) if norm and feat_idx == last_idx else x)
        if intermediates_only:
            return intermediates
        if len(stages) - 1 == last_idx:
            x = self.forward_norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last of `indices` (and the final norm / head); returns the absolute indices.

        Args:
            indices: stage outputs to keep, as in `forward_intermediates`.
            prune_norm: drop the final norm too.
            prune_head: drop the head (pre-logits MLP, pooling and classifier): `forward_head` then passes the
                features through.
        """
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_norm or prune_end:
            self.remove_norm()  # sized for, and only applied to, the last stage
        if prune_end:
            self.num_features = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            # the head (and a flatten-MLP before it) is sized for the last stage's map, so it goes too
            self.pre_logits = None
            self.num_classes = 0
            self.init_head(self.num_features, '')
            self.head.train(self.training)
        return take_indices

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.pre_logits is not None:
            x = self.pre_logits(x)
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _pooled_width(head: ClassifierHead) -> int:
    """Width after global pooling (2x the channels for cat-pooling); newer timm stores it as head.num_features."""
    return head.in_features * head.global_pool.feat_mult()
