"""Residual nets of theabhirath/cifar10-experiments that downsample at the *end* of each chunk: the "ResNet-like"
light/heavy nets (`hybrid_resnet26`, `hybrid_resnet41`) and the "ResNeXt-like" 64x4d nets (`resnext20_64x4d`,
`resnext26_64x4d`).

Architecture from ../shared/specs/architectures.md §3.2-3.3. A chunk with input width c runs (depth-1) blocks
c->c at stride 1, then one block c->2c at stride 2; ResNeXt chunks also add a chunk-level 1x1 stride-2 conv skip
(bias, no BN, no ReLU after the add). Every block projects its shortcut with a 1x1 conv+BN, even when shapes
match, and every conv has a bias, as in the source. Names count the weighted layers on the main path
(stem + block convs + fc): light 1 + 3*2 + 6*3 + 1 = 26, heavy 1 + 6*2 + 9*3 + 1 = 41, ResNeXt 3/4 chunks
1 + 6*3 + 1 = 20 and 1 + 8*3 + 1 = 26.

Params / MACs (spec §1): 310,474 / 69.44M, 3,921,994 / 130.20M, 1,087,114 / 148.33M, 3,090,058 / 164.25M.
Source top-1 (test, final epoch, 45k split; §3.5): 91.20, 91.79, 92.30, 92.00.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Type

import torch
import torch.nn as nn
from timm.layers import ConvNormAct
from timm.models import register_model

from ..layers import GroupedConv2d
from ._base import CifarClassifier
from ._common import SourceResult, cifar_cfg, cifar_default_cfgs, create_cifar_model

__all__ = ['HybridResNet', 'BasicBlock', 'Bottleneck']

THEABHIRATH_URL = 'https://github.com/theabhirath/cifar10-experiments'


class BasicBlock(nn.Module):
    """conv3x3(s)-BN-act -> conv3x3-BN, plus a conv1x1(s)-BN shortcut (always projected); add, act."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        conv_args = dict(bias=True, act_layer=act_layer, norm_layer=norm_layer)
        self.conv1 = ConvNormAct(in_chs, out_chs, 3, stride, **conv_args)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, apply_act=False, **conv_args)
        self.shortcut = ConvNormAct(in_chs, out_chs, 1, stride, apply_act=False, **conv_args)
        self.act = act_layer()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """conv1x1-BN-act -> (grouped) conv3x3(s)-BN-act -> conv1x1-BN, plus a conv1x1(s)-BN shortcut; add, act.

    The mid width is `cardinality * base_width` when `base_width` is given (ResNeXt CxWd: the same in every chunk,
    unlike timm's ResNeXt whose width doubles per stage), else `out_chs // 4`.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            cardinality: int = 1,
            base_width: Optional[int] = None,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        mid_chs = cardinality * base_width if base_width else out_chs // 4
        conv_args = dict(bias=True, act_layer=act_layer, norm_layer=norm_layer)
        self.conv1 = ConvNormAct(in_chs, mid_chs, 1, **conv_args)
        self.conv2 = ConvNormAct(mid_chs, mid_chs, 3, stride, groups=cardinality, **conv_args)
        if cardinality > 1:  # 4-channel groups run merged in pairs on CPU (layers/grouped_conv.py); same parameters
            self.conv2.conv = GroupedConv2d(mid_chs, mid_chs, 3, stride, padding=1, groups=cardinality, bias=True)
        self.conv3 = ConvNormAct(mid_chs, out_chs, 1, apply_act=False, **conv_args)
        self.shortcut = ConvNormAct(in_chs, out_chs, 1, stride, apply_act=False, **conv_args)
        self.act = act_layer()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class Chunk(nn.Module):
    """(depth-1) blocks c->c at stride 1, then one block c->2c at stride 2; optionally a 1x1 s2 conv skip."""

    def __init__(
            self,
            block: Type[nn.Module],
            in_chs: int,
            depth: int,
            chunk_skip: bool = False,
            **block_args: Any,
    ):
        super().__init__()
        out_chs = 2 * in_chs
        self.blocks = nn.Sequential(
            *[block(in_chs, in_chs, 1, **block_args) for _ in range(depth - 1)],
            block(in_chs, out_chs, 2, **block_args),
        )
        self.skip = nn.Conv2d(in_chs, out_chs, 1, stride=2) if chunk_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        if self.skip is not None:
            out = out + self.skip(x)  # no activation after this add (source)
        return out


class HybridResNet(CifarClassifier):
    """Conv stem, then chunks that each double the width and halve the map at their end, GAP, fc.

    `blocks[i]` is the block class of chunk i and `depths[i]` its number of blocks; `block_args` go to every block.
    """

    def __init__(
            self,
            blocks: Sequence[Type[nn.Module]],
            depths: Sequence[int],
            stem_chs: int = 32,
            stem_kernel_size: int = 5,
            chunk_skip: bool = False,
            block_args: Optional[dict[str, Any]] = None,
            zero_init_last: bool = False,
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
    ):
        """
        Args:
            blocks: block class of each chunk (`BasicBlock`, `Bottleneck`).
            depths: blocks per chunk.
            stem_chs: stem conv output channels (the first chunk's input width).
            stem_kernel_size: stem conv kernel size.
            chunk_skip: add a 1x1 stride-2 conv skip around each chunk (ResNeXt-like).
            block_args: extra block arguments (e.g. `cardinality`, `base_width`).
            zero_init_last: zero the last BN gamma of each block (off: the source uses PyTorch's default init).
            num_classes: classifier outputs (0 for none).
            in_chans: input channels.
            global_pool: global pooling type ('avg' in the source).
            drop_rate: dropout before the classifier.
            act_layer: activation class.
            norm_layer: normalisation class.
        """
        super().__init__(num_classes, in_chans, drop_rate)
        assert len(blocks) == len(depths), 'one block class per chunk'

        self.stem = ConvNormAct(
            in_chans, stem_chs, stem_kernel_size, bias=True, act_layer=act_layer, norm_layer=norm_layer)
        chunks = []
        self.feature_info = []
        prev_chs, reduction = stem_chs, 1
        for i, (block, depth) in enumerate(zip(blocks, depths)):
            chunks.append(Chunk(
                block, prev_chs, depth, chunk_skip=chunk_skip,
                act_layer=act_layer, norm_layer=norm_layer, **(block_args or {}),
            ))
            prev_chs, reduction = 2 * prev_chs, 2 * reduction
            self.feature_info.append(dict(num_chs=prev_chs, reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*chunks)
        self.num_features = prev_chs
        self.init_head(prev_chs, global_pool)
        if zero_init_last:
            self.zero_init_residual_branches()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        if coarse:
            return dict(stem=r'^stem', blocks=r'^stages\.(\d+)')
        return dict(stem=r'^stem', blocks=[
            (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            (r'^stages\.(\d+)\.skip', (99999,)),  # the chunk skip joins after the chunk's last block
        ])


def _create_hybrid_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> HybridResNet:
    return create_cifar_model(
        HybridResNet, variant, pretrained,
        default_feature_cfg=dict(out_indices=tuple(range(len(kwargs['depths']))), flatten_sequential=True),
        **kwargs,
    )


def _cfg(paper_ids: str) -> dict[str, Any]:
    # the source repo has no licence file
    return cifar_cfg(
        first_conv='stem.conv', classifier='head.fc', origin_url=THEABHIRATH_URL, paper_ids=paper_ids, license=None)


RESNET_PAPER, RESNEXT_PAPER = 'arXiv:1512.03385', 'arXiv:1611.05431'


_SOURCE_NOTE = 'test, final epoch, 45k-image training split'
default_cfgs = cifar_default_cfgs(
    {
        'hybrid_resnet26': _cfg(RESNET_PAPER),
        'hybrid_resnet41': _cfg(RESNET_PAPER),
        'resnext20_64x4d': _cfg(f'{RESNET_PAPER}, {RESNEXT_PAPER}'),
        'resnext26_64x4d': _cfg(f'{RESNET_PAPER}, {RESNEXT_PAPER}'),
    },
    source_top1={
        'hybrid_resnet26': SourceResult(91.20, _SOURCE_NOTE),
        'hybrid_resnet41': SourceResult(91.79, _SOURCE_NOTE),
        'resnext20_64x4d': SourceResult(92.30, _SOURCE_NOTE),
        'resnext26_64x4d': SourceResult(92.00, _SOURCE_NOTE),
    },
)


@register_model
def hybrid_resnet26(pretrained: bool = False, **kwargs: Any) -> HybridResNet:
    """"ResNet-like light": 1 basic + 2 bottleneck chunks of 3 blocks, 32->64->128->256 (spec §3.2)."""
    model_args = dict(blocks=(BasicBlock, Bottleneck, Bottleneck), depths=(3, 3, 3), stem_chs=32)
    return _create_hybrid_resnet('hybrid_resnet26', pretrained, **dict(model_args, **kwargs))


@register_model
def hybrid_resnet41(pretrained: bool = False, **kwargs: Any) -> HybridResNet:
    """"ResNet-like heavy": 2 basic + 3 bottleneck chunks of 3 blocks, 32->...->1024 (spec §3.2)."""
    model_args = dict(blocks=(BasicBlock,) * 2 + (Bottleneck,) * 3, depths=(3,) * 5, stem_chs=32)
    return _create_hybrid_resnet('hybrid_resnet41', pretrained, **dict(model_args, **kwargs))


@register_model
def resnext20_64x4d(pretrained: bool = False, **kwargs: Any) -> HybridResNet:
    """"ResNeXt-like" 3 chunks of 2 ResNeXt blocks (64 groups x 4 ch), chunk skips, 64->...->512 (spec §3.3)."""
    model_args = dict(
        blocks=(Bottleneck,) * 3, depths=(2,) * 3, stem_chs=64, chunk_skip=True,
        block_args=dict(cardinality=64, base_width=4),
    )
    return _create_hybrid_resnet('resnext20_64x4d', pretrained, **dict(model_args, **kwargs))


@register_model
def resnext26_64x4d(pretrained: bool = False, **kwargs: Any) -> HybridResNet:
    """"ResNeXt-like" with one extra chunk: 4 chunks, 64->...->1024 (spec §3.3)."""
    model_args = dict(
        blocks=(Bottleneck,) * 4, depths=(2,) * 4, stem_chs=64, chunk_skip=True,
        block_args=dict(cardinality=64, base_width=4),
    )
    return _create_hybrid_resnet('resnext26_64x4d', pretrained, **dict(model_args, **kwargs))
