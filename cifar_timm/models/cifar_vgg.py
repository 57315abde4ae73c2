"""VGG-like CIFAR-10 network of theabhirath/cifar10-experiments (`vgg7_bn`), and the flatten-MLP head it shares
with CIFARnet.

Architecture from ../shared/specs/architectures.md §3.1: a 5x5 conv-BN-ReLU stem, then stages of
[conv3x3-BN-ReLU c->c, Dropout2d(0.2)], [conv3x3-BN-ReLU c->2c], max-pool 2, then flatten -> Linear 128 ->
Dropout(0.2) -> ReLU -> Linear 10. Every conv has a bias, as in the source. 1,110,826 params, 87.92M MACs.
The source reports 90.16% test top-1 (final epoch, trained on a 45k split; §3.5).

The flatten+Linear head is written timm's way (cf. timm/models/vgg.py `ConvMlp`): the first MLP layer is a conv
whose kernel spans the whole final feature map of a 32x32 input, so at 32x32 it *is* flatten+Linear (same weight
count, same values after a reshape), while a larger input leaves a map that `global_pool` then pools.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional, Sequence, Type

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvNormAct
from timm.models import register_model

from ..constants import CIFAR10_INPUT_SIZE
from ._base import CifarClassifier
from ._common import SourceResult, cifar_cfg, cifar_default_cfgs, create_cifar_model

__all__ = ['CifarVgg', 'FlattenMlp']

THEABHIRATH_URL = 'https://github.com/theabhirath/cifar10-experiments'


@torch.fx.wrap  # a leaf for FX: the size check is Python control flow on the input shape
def _grow_to_kernel(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Average-resample a map smaller than the flatten kernel up to it, so inputs below 32x32 still run."""
    if x.shape[-2] < kernel_size or x.shape[-1] < kernel_size:
        x = F.adaptive_avg_pool2d(x, (max(kernel_size, x.shape[-2]), max(kernel_size, x.shape[-1])))
    return x


class FlattenMlp(nn.Module):
    """Flatten + MLP (pre-logits) as convolutions; each layer is fc -> act -> (norm) -> dropout.

    Layer 1 is a `kernel_size` conv (= flatten + Linear on a `kernel_size`-square map), later layers are 1x1.
    Dropout after the activation equals the sources' dropout-before-ReLU: ReLU commutes with the positive rescale.
    """

    def __init__(
            self,
            in_chs: int,
            kernel_size: int,
            hidden_sizes: Sequence[int],
            act_layers: Sequence[Type[nn.Module]],
            norm_layers: Sequence[Optional[Type[nn.Module]]],
            drop_rate: float,
    ):
        super().__init__()
        self.kernel_size = kernel_size
        layers = []
        prev_chs = in_chs
        for i, (chs, act_layer, norm_layer) in enumerate(zip(hidden_sizes, act_layers, norm_layers)):
            layers.append(nn.Sequential(OrderedDict([
                ('fc', nn.Conv2d(prev_chs, chs, kernel_size if i == 0 else 1)),
                ('act', act_layer()),
                ('norm', norm_layer(chs) if norm_layer is not None else nn.Identity()),
                ('drop', nn.Dropout(drop_rate)),
            ])))
            prev_chs = chs
        self.layers = nn.Sequential(*layers)
        self.out_chs = prev_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(_grow_to_kernel(x, self.kernel_size))


class CifarVgg(CifarClassifier):
    """VGG-like net: conv stem, stages of two conv-BN-ReLU (Dropout2d between) and a max-pool, flatten-MLP head.

    `global_pool` pools the flatten-MLP's output map, which is 1x1 for `img_size` inputs (so a no-op there) and
    larger for larger inputs; `drop_rate` is an extra dropout before the classifier (0 in the source).
    """

    def __init__(
            self,
            widths: Sequence[int] = (64, 128, 256),
            stem_chs: int = 32,
            stem_kernel_size: int = 5,
            stage_drop_rate: float = 0.2,
            mlp_hidden: int = 128,
            mlp_drop_rate: float = 0.2,
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
            widths: output channels of each stage (each stage doubles its input width and halves the map).
            stem_chs: stem conv output channels.
            stem_kernel_size: stem conv kernel size.
            stage_drop_rate: Dropout2d rate after each stage's first conv.
            mlp_hidden: width of the flatten-MLP hidden layer.
            mlp_drop_rate: dropout rate in the flatten-MLP.
            img_size: input size the flatten-MLP kernel is sized for (the final map of this input is flattened).
            num_classes: classifier outputs (0 for none).
            in_chans: input channels.
            global_pool: pooling of the flatten-MLP output map ('avg', 'max', 'avgmax', 'catavgmax', '').
            drop_rate: dropout before the classifier.
            act_layer: activation class.
            norm_layer: normalisation class.
        """
        super().__init__(num_classes, in_chans, drop_rate)
        conv_args = dict(bias=True, act_layer=act_layer, norm_layer=norm_layer)

        self.stem = ConvNormAct(in_chans, stem_chs, stem_kernel_size, **conv_args)
        stages = []
        self.feature_info = []
        prev_chs, reduction = stem_chs, 1
        for i, chs in enumerate(widths):
            reduction *= 2
            stages.append(nn.Sequential(OrderedDict([
                ('conv1', ConvNormAct(prev_chs, prev_chs, 3, **conv_args)),
                ('drop', nn.Dropout2d(stage_drop_rate)),
                ('conv2', ConvNormAct(prev_chs, chs, 3, **conv_args)),
                ('pool', nn.MaxPool2d(2)),
            ])))
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f'stages.{i}'))
            prev_chs = chs
        self.stages = nn.Sequential(*stages)
        self.num_features = prev_chs

        self.pre_logits = FlattenMlp(
            prev_chs, img_size // reduction, (mlp_hidden,), (act_layer,), (None,), mlp_drop_rate)
        self.init_head(self.pre_logits.out_chs, global_pool)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^stages\.(\d+)')  # a stage is only two convs


def _create_vgg(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarVgg:
    return create_cifar_model(
        CifarVgg, variant, pretrained,
        default_feature_cfg=dict(out_indices=tuple(range(len(kwargs['widths']))), flatten_sequential=True),
        **kwargs,
    )


default_cfgs = cifar_default_cfgs(
    {'vgg7_bn': cifar_cfg(
        first_conv='stem.conv', classifier='head.fc', origin_url=THEABHIRATH_URL,
        paper_ids='arXiv:1409.1556',  # VGG; the source repo has no licence file
        license=None)},
    source_top1={'vgg7_bn': SourceResult(90.16, 'test, final epoch, 45k-image training split')},
)


@register_model
def vgg7_bn(pretrained: bool = False, **kwargs: Any) -> CifarVgg:
    """VGG-like, 5x5 stem + 3 stages of two convs (32->64->128->256), flatten-MLP 4096->128->10 (spec §3.1)."""
    model_args = dict(widths=(64, 128, 256), stem_chs=32, mlp_hidden=128)
    return _create_vgg('vgg7_bn', pretrained, **dict(model_args, **kwargs))
