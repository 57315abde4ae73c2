"""DenseNet-BC-like CIFAR-10 nets of theabhirath/cifar10-experiments (`densenet86_bc_k12`, `densenet103_bc_k16`).

Architecture from ../shared/specs/architectures.md §3.4: a 5x5 conv-BN-ReLU stem to 4k channels, then chunks of
[dense block of 8 layers, transition conv1x1-BN-ReLU to half the width + avg-pool 2], then one last dense block
and GAP -> fc. Dense layers are *post*-activation (conv-BN-ReLU, unlike the DenseNet paper): 1x1 to 4k, then
3x3 to k, concatenated onto the running stack. Every conv has a bias, as in the source.

Here a stage is [transition (stages after the first), dense block], so each feature map is a dense block's full
stack: reductions 1, 2, 4, ... Names count weighted layers: 1 + (chunks + 1) * 16 + chunks + 1 = 86 / 103.
Params / MACs (spec §1): 508,447 / 126.51M and 1,098,724 / 223.56M. Source top-1 (test, final epoch, 45k split;
§3.5): 92.8 and 93.09.
"""
from __future__ import annotations

from typing import Any, Type

import torch
import torch.nn as nn
from timm.layers import ConvNormAct
from timm.models import register_model

from ._base import CifarClassifier
from ._common import SourceResult, cifar_cfg, cifar_default_cfgs, create_cifar_model

__all__ = ['CifarDenseNet']

THEABHIRATH_URL = 'https://github.com/theabhirath/cifar10-experiments'


class DenseLayer(nn.Module):
    """conv1x1-BN-act to the bottleneck width, then conv3x3-BN-act to `growth_rate` new channels."""

    def __init__(self, in_chs: int, growth_rate: int, bottleneck_chs: int, **conv_args: Any):
        super().__init__()
        self.conv1 = ConvNormAct(in_chs, bottleneck_chs, 1, **conv_args)
        self.conv2 = ConvNormAct(bottleneck_chs, growth_rate, 3, **conv_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class DenseBlock(nn.Module):
    """`depth` dense layers, each appending its output to the channel stack it read."""

    def __init__(self, in_chs: int, depth: int, growth_rate: int, bottleneck_chs: int, **conv_args: Any):
        super().__init__()
        self.layers = nn.ModuleList([
            DenseLayer(in_chs + i * growth_rate, growth_rate, bottleneck_chs, **conv_args) for i in range(depth)])
        self.out_chs = in_chs + depth * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class CifarDenseNet(CifarClassifier):
    """DenseNet-BC-like: stem, `num_chunks` x (dense block, transition), one last dense block, GAP, fc."""

    def __init__(
            self,
            growth_rate: int = 12,
            num_chunks: int = 4,
            block_depth: int = 8,
            bottleneck_ratio: int = 4,
            compression: float = 0.5,
            stem_kernel_size: int = 5,
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ):
        """
        Args:
            growth_rate: channels each dense layer adds (k); the stem has 4k.
            num_chunks: dense blocks followed by a transition (one more dense block ends the trunk).
            block_depth: dense layers per block.
            bottleneck_ratio: dense-layer 1x1 width as a multiple of k.
            compression: transition output width as a fraction of its input (floored).
            stem_kernel_size: stem conv kernel size.
            num_classes: classifier outputs (0 for none).
            in_chans: input channels.
            global_pool: global pooling type ('avg' in the source).
            drop_rate: dropout before the classifier.
            act_layer: activation class.
            norm_layer: normalisation class.
        """
        super().__init__(num_classes, in_chans, drop_rate)
        conv_args = dict(bias=True, act_layer=act_layer, norm_layer=norm_layer)
        block_args = dict(depth=block_depth, growth_rate=growth_rate, bottleneck_chs=bottleneck_ratio * growth_rate)

        prev_chs = 4 * growth_rate
        self.stem = ConvNormAct(in_chans, prev_chs, stem_kernel_size, **conv_args)
        stages = []
        self.feature_info = []
        reduction = 1
        for i in range(num_chunks + 1):
            stage = nn.Sequential()
            if i > 0:
                trans_chs = int(prev_chs * compression)
                stage.add_module('transition', nn.Sequential(
                    ConvNormAct(prev_chs, trans_chs, 1, **conv_args), nn.AvgPool2d(2)))
                prev_chs, reduction = trans_chs, 2 * reduction
            block = DenseBlock(prev_chs, **block_args, **conv_args)
            stage.add_module('block', block)
            prev_chs = block.out_chs
            stages.append(stage)
            self.feature_info.append(dict(num_chs=prev_chs, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = prev_chs
        self.init_head(prev_chs, global_pool)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        if coarse:
            return dict(stem=r'^stem', blocks=r'^stages\.(\d+)')
        return dict(stem=r'^stem', blocks=[
            (r'^stages\.(\d+)\.transition', (0,)),
            (r'^stages\.(\d+)\.block\.layers\.(\d+)', None),
        ])


def _create_densenet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarDenseNet:
    return create_cifar_model(
        CifarDenseNet, variant, pretrained,
        default_feature_cfg=dict(out_indices=tuple(range(kwargs['num_chunks'] + 1)), flatten_sequential=True),
        **kwargs,
    )


def _cfg() -> dict[str, Any]:
    # DenseNet paper; the source repo has no licence file
    return cifar_cfg(
        first_conv='stem.conv', classifier='head.fc', origin_url=THEABHIRATH_URL, paper_ids='arXiv:1608.06993',
        license=None)


_SOURCE_NOTE = 'test, final epoch, 45k-image training split'
default_cfgs = cifar_default_cfgs(
    {'densenet86_bc_k12': _cfg(), 'densenet103_bc_k16': _cfg()},
    source_top1={
        'densenet86_bc_k12': SourceResult(92.8, _SOURCE_NOTE),
        'densenet103_bc_k16': SourceResult(93.09, _SOURCE_NOTE),
    },
)


@register_model
def densenet86_bc_k12(pretrained: bool = False, **kwargs: Any) -> CifarDenseNet:
    """Growth 12, 4 chunks + a final block of 8 layers each: 48 -> ... -> 189 channels (spec §3.4)."""
    model_args = dict(growth_rate=12, num_chunks=4, block_depth=8)
    return _create_densenet('densenet86_bc_k12', pretrained, **dict(model_args, **kwargs))


@register_model
def densenet103_bc_k16(pretrained: bool = False, **kwargs: Any) -> CifarDenseNet:
    """Growth 16, 5 chunks + a final block of 8 layers each: 64 -> ... -> 254 channels at 1x1 (spec §3.4)."""
    model_args = dict(growth_rate=16, num_chunks=5, block_depth=8)
    return _create_densenet('densenet103_bc_k16', pretrained, **dict(model_args, **kwargs))
