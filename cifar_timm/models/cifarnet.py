"""CIFARnet, the simple convnet of culpritgene/fineopia (`CIFARnet.py`, GPL-3.0): `cifarnet`.

Architecture from ../shared/specs/architectures.md §5.2: four stages of conv3x3 (bias) -> ReLU -> BN, widths
16/32/64/128, Dropout2d(0.3) after the third conv, max-pool 2 after convs 1-3; then flatten 2048 -> Linear 512 ->
ReLU -> BatchNorm1d -> Dropout(0.3) -> Linear 256 -> tanh -> Dropout(0.3) -> Linear 10. Linear weights are
xavier-uniform, convs keep PyTorch's default init. 1,281,930 params, 5.16M MACs (conv+fc). The source repo
reports no accuracy.

The flatten-MLP is the one vgg7_bn uses (`FlattenMlp`): convs that equal flatten+Linear at 32x32, with
BatchNorm1d as a BatchNorm2d over the 1x1 map (the same statistics there).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Optional, Sequence, Type

import torch
import torch.nn as nn
from timm.models import register_model

from ..constants import CIFAR10_INPUT_SIZE
from ._base import CifarClassifier
from ._common import cifar_cfg, cifar_default_cfgs, create_cifar_model
from .cifar_vgg import FlattenMlp

__all__ = ['CifarNet']

FINEOPIA_URL = 'https://github.com/culpritgene/fineopia'


def _xavier_uniform_as_linear_(weight: torch.Tensor) -> None:
    """Xavier-uniform with the fans of the Linear layer this conv stands for (fan_out = out channels)."""
    fan_in, fan_out = weight[0].numel(), weight.shape[0]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(weight, -bound, bound)


class CifarNet(CifarClassifier):
    """Stages of conv3x3 -> act -> BN (act before norm, as in the source), optional Dropout2d and max-pool,
    then a two-hidden-layer flatten-MLP head.

    `global_pool` pools the flatten-MLP's output map, which is 1x1 for `img_size` inputs (so a no-op there) and
    larger for larger inputs; `drop_rate` is an extra dropout before the classifier (0 in the source).
    """

    def __init__(
            self,
            widths: Sequence[int] = (16, 32, 64, 128),
            stage_drop_rates: Sequence[float] = (0., 0., 0.3, 0.),
            stage_pools: Sequence[bool] = (True, True, True, False),
            mlp_hidden: Sequence[int] = (512, 256),
            mlp_act_layers: Sequence[Type[nn.Module]] = (nn.ReLU, nn.Tanh),
            mlp_norm_layers: Sequence[Optional[Type[nn.Module]]] = (nn.BatchNorm2d, None),
            mlp_drop_rate: float = 0.3,
            img_size: int = CIFAR10_INPUT_SIZE[-1],
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ):
        """
        Args:
            widths: conv output channels of each stage.
            stage_drop_rates: Dropout2d rate after each stage's conv (0 for none).
            stage_pools: whether each stage ends with a 2x2 max-pool.
            mlp_hidden: flatten-MLP hidden widths.
            mlp_act_layers: activation class of each flatten-MLP layer.
            mlp_norm_layers: normalisation class (or None) after each flatten-MLP activation.
            mlp_drop_rate: dropout rate after each flatten-MLP layer.
            img_size: input size the flatten-MLP kernel is sized for (the final map of this input is flattened).
            num_classes: classifier outputs (0 for none).
            in_chans: input channels.
            global_pool: pooling of the flatten-MLP output map ('avg', 'max', 'avgmax', 'catavgmax', '').
            drop_rate: dropout before the classifier.
            act_layer: conv-stage activation class.
            norm_layer: conv-stage normalisation class.
        """
        super().__init__(num_classes, in_chans, drop_rate)

        stages = []
        self.feature_info = []
        prev_chs, reduction = in_chans, 1
        for i, (chs, stage_drop, pool) in enumerate(zip(widths, stage_drop_rates, stage_pools)):
            stages.append(nn.Sequential(OrderedDict([
                ('conv', nn.Conv2d(prev_chs, chs, 3, padding=1)),
                ('act', act_layer()),
                ('bn', norm_layer(chs)),
                ('drop', nn.Dropout2d(stage_drop) if stage_drop else nn.Identity()),
                ('pool', nn.MaxPool2d(2) if pool else nn.Identity()),
            ])))
            prev_chs, reduction = chs, reduction * (2 if pool else 1)
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = prev_chs

        self.pre_logits = FlattenMlp(
            prev_chs, img_size // reduction, mlp_hidden, mlp_act_layers, mlp_norm_layers, mlp_drop_rate)
        self.init_head(self.pre_logits.out_chs, global_pool)
        self.init_weights()

    @torch.jit.ignore
    def init_weights(self) -> None:
        """Xavier-uniform on the (flatten-)Linear weights, as the source does; convs keep the default init."""
        for m in [*self.pre_logits.modules(), *self.head.modules()]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _xavier_uniform_as_linear_(m.weight)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r'^stages\.0\.', blocks=r'^stages\.(\d+)')  # one conv per stage; the first is the stem


def _create_cifarnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarNet:
    return create_cifar_model(
        CifarNet, variant, pretrained,
        default_feature_cfg=dict(out_indices=tuple(range(len(kwargs['widths']))), flatten_sequential=True),
        **kwargs,
    )


default_cfgs = cifar_default_cfgs(
    {'cifarnet': cifar_cfg(
        first_conv='stages.0.conv', classifier='head.fc', origin_url=FINEOPIA_URL, license='gpl-3.0')},
    source_top1={'cifarnet': None},  # accuracies only in the author's W&B charts (spec §5)
)


@register_model
def cifarnet(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """CIFARnet: 4 conv stages 16/32/64/128, flatten-MLP 2048 -> 512 -> 256 -> 10 (spec §5.2)."""
    model_args = dict(widths=(16, 32, 64, 128))
    return _create_cifarnet('cifarnet', pretrained, **dict(model_args, **kwargs))
