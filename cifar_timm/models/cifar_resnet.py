"""CIFAR ResNets: one configurable `CifarResNet` for every residual family of the seed projects.

Architectures and parameter counts follow ../shared/specs/architectures.md (sections cited per entrypoint):
* He et al. option A (§4.1): resnet20/32/44/56/110/1202, post-activation basic blocks and a parameter-free
  zero-pad shortcut; `block_dropout` adds fineopia's Dropout2d after each block BN (§5.1).
* fattorib/ResNets-CIFAR10 (§4.2): resnet20/32/44/56_fattorib, the same blocks and shortcut with the downsampling
  at the end of stages 1 and 2 (`stage_downsample='last'`), so stage 3 holds n full 64-channel blocks.
* Bag of tricks, iamVarunAnand/image_classification (§2): xresnet/mxresnet/se_mxresnet 20-56 and the
  xresnet29/xresnext29 bottlenecks. Pre-activation blocks, a ResNet-D shortcut on the pre-activated input,
  TF/Keras 'same' padding, BN+act then [avg, max] pooling in the head (timm 'fastcatavgmax': the numbers of
  'catavgmax', and unlike it, scriptable).
* Efficient ResNets (§6): efficient_resnet24, one SE block after the stem.
* resnet18_cifar: torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool (the common baseline).
* fineopia "MyResNet" (§5.4): resnet50_4s, biased convs, act-before-BN stem, Dropout2d in every block.

Module names (`stem`, `stages.i.j`, `norm`, `head.fc`) are the layout weights are ported into.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerType, create_attn, get_act_layer
from timm.models import register_model

from ..layers import (FastMish, GroupedConv2d, SqueezeExcite, grouped_conv2d, keras_same_avg_pool2d,
                      keras_same_avg_pool2d_eager)
from ._base import CifarClassifier
from ._common import SourceResult, cifar_cfg, cifar_default_cfgs, create_cifar_model

__all__ = ['CifarResNet', 'BasicBlock', 'PreActBasicBlock', 'PreActBottleneck']

# fx keeps these calls as leaves (fx.wrap patches the globals of the module that calls it, so this one too)
torch.fx.wrap('grouped_conv2d')
torch.fx.wrap('keras_same_avg_pool2d')

# Keras layer defaults of the seed-1 (iamVarunAnand) models: block BNs set eps 2e-5; the shortcut BN keeps
# Keras's own defaults, eps 1e-3 and momentum 0.99 (PyTorch momentum 0.01).
KERAS_BN = partial(nn.BatchNorm2d, eps=2e-5)
KERAS_DEFAULT_BN = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
# Keras SE: floor(C/16) hidden units, no biases (timm's default divisor 8 would round 16/16 up to 8). SqueezeExcite
# is timm's SEModule with a cheaper backward (layers/squeeze_excite.py).
KERAS_SE = partial(SqueezeExcite, rd_ratio=1 / 16, rd_divisor=1, bias=False)
# Efficient ResNets' SE on the stem: 1x1 convs with biases.
STEM_SE = partial(SqueezeExcite, rd_ratio=1 / 16, rd_divisor=1, bias=True)

# Each source's weight init: kaiming-normal mode for the weights (None keeps PyTorch's defaults),
# whether Linear weights get it too, and whether biases start at zero.
WEIGHT_INITS: Dict[str, Tuple[Optional[str], bool, bool]] = {
    'he': ('fan_in', True, False),               # He et al. / akamaster and fineopia: kaiming_normal_
    'keras_he_normal': ('fan_in', True, True),   # Keras he_normal kernels, zero biases (seed 1)
    'torchvision': ('fan_out', False, False),    # torchvision ResNet
    'torch': (None, False, False),               # PyTorch defaults (Efficient ResNets)
}


class ZeroPadShortcut(nn.Module):
    """He et al. option A: subsample by the stride and zero-pad the new channels on both sides. No parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.pad_before = (out_chs - in_chs) // 2
        self.pad_after = out_chs - in_chs - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class KerasSameAvgPool2d(nn.Module):
    """2x2 average pool with Keras 'same' padding: the pad goes bottom/right and is left out of the mean (at stride 1
    with a faster backward on CPU, layers/same_avg_pool.py)."""

    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return keras_same_avg_pool2d_eager(x, self.stride)
        else:
            return keras_same_avg_pool2d(x, self.stride)


def keras_same_padding(size: int, kernel_size: int, stride: int) -> int:
    """Total Keras/TF 'same' padding of one dimension; never negative while kernel_size >= stride."""
    return (-(-size // stride) - 1) * stride + kernel_size - size


class KerasSameConv2d(nn.Conv2d):
    """Conv2d with Keras/TF 'same' padding worked out from the input size: a stride-2 3x3 conv pads only
    bottom/right on even inputs. Same numbers as timm's Conv2dSame, written so that plain `torch.fx.symbolic_trace`
    (not only timm's tracer) and TorchScript both handle it."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1):
        if kernel_size < stride:
            raise ValueError(f'KerasSameConv2d needs kernel_size >= stride, got {kernel_size} < {stride}')
        super().__init__(in_chs, out_chs, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = keras_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = keras_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        if torch.jit.is_scripting():
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        else:
            return grouped_conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.groups)


def keras_conv2d(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with Keras 'same' padding: static (symmetric) at stride 1, from the input size otherwise."""
    if stride == 1:
        conv = GroupedConv2d if groups > 1 else nn.Conv2d
        return conv(in_chs, out_chs, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
    return KerasSameConv2d(in_chs, out_chs, kernel_size, stride=stride, groups=groups)


def create_shortcut(
        shortcut: str,
        in_chs: int,
        out_chs: int,
        stride: int,
        norm_layer: Optional[Type[nn.Module]],
) -> nn.Module:
    """The shortcut of a block whose shape changes (or that projects anyway).

    'zero_pad': option A; 'conv': 1x1 conv (+ norm), option B; 'avg_conv': ResNet-D, 2x2 avg pool then
    1x1 conv (+ norm), fed by the pre-activated block input.
    """
    if shortcut == 'zero_pad':
        return ZeroPadShortcut(in_chs, out_chs, stride)
    layers = []
    if shortcut == 'avg_conv':
        layers += [('pool', KerasSameAvgPool2d(stride))]
        stride = 1
    elif shortcut != 'conv':
        raise ValueError(f"unknown shortcut {shortcut!r}: use 'zero_pad', 'conv' or 'avg_conv'")
    layers += [('conv', nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False))]
    if norm_layer is not None:
        layers += [('bn', norm_layer(out_chs))]
    return nn.Sequential(OrderedDict(layers))


class BasicBlock(nn.Module):
    """Post-activation basic block: conv-BN-[drop]-act-conv-BN-[drop]-(attn), add the shortcut, act.

    The first conv strides and widens, unless `reduce_last`: then the second does (fattorib's end-of-stage block).
    """
    preact = False

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            conv_bias: bool = False,
            block_dropout: float = 0.,
            reduce_last: bool = False,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
            attn_layer: Optional[Type[nn.Module]] = None,
    ):
        super().__init__()
        mid_chs, stride1, stride2 = (in_chs, 1, stride) if reduce_last else (out_chs, stride, 1)
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 3, stride=stride1, padding=1, bias=conv_bias)
        self.bn1 = norm_layer(mid_chs)
        self.drop1 = nn.Dropout2d(block_dropout) if block_dropout else nn.Identity()
        self.act1 = act_layer(inplace=True)
        self.conv2 = nn.Conv2d(mid_chs, out_chs, 3, stride=stride2, padding=1, bias=conv_bias)
        self.bn2 = norm_layer(out_chs)
        self.drop2 = nn.Dropout2d(block_dropout) if block_dropout else nn.Identity()
        self.se = create_attn(attn_layer, out_chs)
        self.downsample = downsample
        self.act2 = act_layer(inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.drop1(self.bn1(self.conv1(x))))
        x = self.drop2(self.bn2(self.conv2(x)))
        if self.se is not None:
            x = self.se(x)
        return self.act2(x + shortcut)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: BN-act-conv, BN-act-conv, (attn); a projecting shortcut reads BN1-act."""
    preact = True

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
            attn_layer: Optional[Type[nn.Module]] = None,
    ):
        super().__init__()
        self.bn1 = norm_layer(in_chs)
        self.act1 = act_layer(inplace=True)
        self.conv1 = keras_conv2d(in_chs, out_chs, 3, stride=stride)
        self.bn2 = norm_layer(out_chs)
        self.act2 = act_layer(inplace=True)
        self.conv2 = keras_conv2d(out_chs, out_chs, 3)
        self.se = create_attn(attn_layer, out_chs)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_preact = self.act1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(x_preact)
        x = self.conv1(x_preact)
        x = self.conv2(self.act2(self.bn2(x)))
        if self.se is not None:
            x = self.se(x)
        return x + shortcut


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (stride on the grouped 3x3); mid width = floor(out/64 * base_width) * groups."""
    preact = True

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            downsample: Optional[nn.Module] = None,
            cardinality: int = 1,
            base_width: int = 16,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm2d,
            attn_layer: Optional[Type[nn.Module]] = None,
    ):
        super().__init__()
        mid_chs = int(out_chs / 64 * base_width) * cardinality
        self.bn1 = norm_layer(in_chs)
        self.act1 = act_layer(inplace=True)
        self.conv1 = keras_conv2d(in_chs, mid_chs, 1)
        self.bn2 = norm_layer(mid_chs)
        self.act2 = act_layer(inplace=True)
        self.conv2 = keras_conv2d(mid_chs, mid_chs, 3, stride=stride, groups=cardinality)
        self.bn3 = norm_layer(mid_chs)
        self.act3 = act_layer(inplace=True)
        self.conv3 = keras_conv2d(mid_chs, out_chs, 1)
        self.se = create_attn(attn_layer, out_chs)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_preact = self.act1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(x_preact)
        x = self.conv1(x_preact)
        x = self.conv2(self.act2(self.bn2(x)))
        x = self.conv3(self.act3(self.bn3(x)))
        if self.se is not None:
            x = self.se(x)
        return x + shortcut


# Options only some blocks take (conv_bias, block_dropout, reduce_last: BasicBlock; cardinality, base_width:
# PreActBottleneck).
BLOCK_OPTION_DEFAULTS: Dict[str, Any] = dict(
    conv_bias=False, block_dropout=0., reduce_last=False, cardinality=1, base_width=16)
# Where a stage changes resolution and width: in its first block (all but the first stage; He et al.) or in its last
# block (all but the last stage; fattorib).
STAGE_DOWNSAMPLE = ('first', 'last')
BlockType = Union[Type[BasicBlock], Type[PreActBasicBlock], Type[PreActBottleneck]]


class CifarResNet(CifarClassifier):
    """A CIFAR ResNet: stem, stages of residual blocks (stride 1 then 2 each), optional final norm-act, head.

    Every variant in this file is a set of constructor arguments; see the entrypoints below.
    """
    checkpoint_blocks = True  # stages are up to 200 blocks deep: checkpoint each block

    def __init__(
            self,
            block: BlockType,
            layers: Sequence[int],
            widths: Sequence[int],
            stem_width: int = 16,
            stem_layers: Sequence[str] = ('conv', 'norm', 'act'),
            stem_attn_layer: Optional[LayerType] = None,
            shortcut: str = 'zero_pad',
            stage_downsample: str = 'first',
            stage1_proj: bool = False,
            shortcut_bn: bool = True,
            shortcut_norm_layer: Optional[LayerType] = None,
            cardinality: int = BLOCK_OPTION_DEFAULTS['cardinality'],
            base_width: int = BLOCK_OPTION_DEFAULTS['base_width'],
            conv_bias: bool = BLOCK_OPTION_DEFAULTS['conv_bias'],
            block_dropout: float = BLOCK_OPTION_DEFAULTS['block_dropout'],
            act_layer: LayerType = nn.ReLU,
            norm_layer: LayerType = nn.BatchNorm2d,
            attn_layer: Optional[LayerType] = None,
            num_classes: int = 10,
            in_chans: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            weight_init: str = 'he',
            zero_init_last: bool = False,
    ):
        """
        Args:
            block: residual block class (`BasicBlock`, `PreActBasicBlock` or `PreActBottleneck`); a pre-activation
                block adds a final norm-act before the head.
            layers: blocks per stage.
            widths: output channels per stage.
            stem_width: channels of the stem conv.
            stem_layers: the stem in order, from 'conv' (3x3, stride 1), 'norm', 'act', 'attn' (`stem_attn_layer`).
            shortcut: projecting shortcut: 'zero_pad' (option A), 'conv' (1x1 conv + BN) or 'avg_conv' (ResNet-D).
            stage_downsample: 'first': the first block of every stage but the first halves the resolution and
                takes the stage's width; 'last': the last block of every stage but the last halves it and widens to
                the next stage's width, on its second conv (fattorib; `BasicBlock` only).
            stage1_proj: the first block of stage 1 projects even though its shape does not change.
            shortcut_bn: a norm layer follows a projecting shortcut's conv.
            shortcut_norm_layer: that norm layer (default `norm_layer`).
            cardinality: groups of the bottleneck 3x3 conv.
            base_width: bottleneck width per group for a 64-channel output.
            conv_bias: stem and block convs carry a bias (fineopia).
            block_dropout: Dropout2d probability after each BN of a post-activation block (fineopia).
            act_layer: trunk activation; norm_layer: trunk norm; attn_layer: attention at the end of each branch.
            num_classes: classifier outputs (0 for none); in_chans: input channels.
            global_pool: timm pooling type of the head ('avg', 'catavgmax', ...; '' for none).
            drop_rate: dropout before the classifier.
            weight_init: the source's init scheme, a key of `WEIGHT_INITS`.
            zero_init_last: start every residual branch at zero (its last BN weight or conv).
        """
        super().__init__(num_classes, in_chans, drop_rate)
        if len(layers) != len(widths):
            raise ValueError(f'layers {tuple(layers)} and widths {tuple(widths)} must name the same stages')
        if stage_downsample not in STAGE_DOWNSAMPLE:
            raise ValueError(f'stage_downsample {stage_downsample!r}: use one of {STAGE_DOWNSAMPLE}')
        downsample_last = stage_downsample == 'last'
        if downsample_last and block is not BasicBlock:
            raise ValueError("stage_downsample='last' needs block=BasicBlock (it strides the block's second conv)")
        act_layer = get_act_layer(act_layer)
        stem_layers = tuple(stem_layers)

        stem_parts = dict(
            conv=lambda: nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=conv_bias),
            norm=lambda: norm_layer(stem_width),
            act=lambda: act_layer(inplace=True),
            attn=lambda: create_attn(stem_attn_layer, stem_width),
        )
        if stem_layers[:1] != ('conv',) or not set(stem_layers) <= set(stem_parts) or (
                'attn' in stem_layers and stem_attn_layer is None):
            raise ValueError(
                f'stem_layers {tuple(stem_layers)}: start with "conv", then any of "norm", "act", "attn" '
                f'("attn" needs stem_attn_layer)')
        self.stem = nn.Sequential(OrderedDict((name, stem_parts[name]()) for name in stem_layers))

        shortcut_norm_layer = (shortcut_norm_layer or norm_layer) if shortcut_bn else None
        block_kwargs = dict(act_layer=act_layer, norm_layer=norm_layer, attn_layer=attn_layer)
        # block-specific options go only to blocks that have them: setting one for another block is a TypeError
        block_options = dict(conv_bias=conv_bias, block_dropout=block_dropout, reduce_last=downsample_last,
                             cardinality=cardinality, base_width=base_width)
        block_kwargs.update({k: v for k, v in block_options.items() if v != BLOCK_OPTION_DEFAULTS[k]})
        stages, self.feature_info = [], []
        in_chs, reduction = stem_width, 1
        for stage_idx, (depth, width) in enumerate(zip(layers, widths)):
            # the one block of the stage that halves the resolution (None: none does)
            if downsample_last:
                down_idx = depth - 1 if stage_idx < len(layers) - 1 else None
            else:
                down_idx = 0 if stage_idx > 0 else None
            blocks = []
            for block_idx in range(depth):
                stride = 2 if block_idx == down_idx else 1
                out_chs = widths[stage_idx + 1] if downsample_last and stride == 2 else width
                reduction *= stride
                projects = stride != 1 or in_chs != out_chs or (stage_idx == block_idx == 0 and stage1_proj)
                downsample = create_shortcut(
                    shortcut, in_chs, out_chs, stride, shortcut_norm_layer) if projects else None
                blocks.append(block(in_chs, out_chs, stride, downsample, **block_kwargs))
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=out_chs, reduction=reduction, module=f'stages.{stage_idx}'))
        self.stages = nn.Sequential(*stages)

        # pre-activation trunks end un-normalised: the head gets the final BN + act
        self.num_features = in_chs
        self.norm = norm_layer(in_chs) if block.preact else nn.Identity()
        self.act = act_layer(inplace=True) if block.preact else nn.Identity()
        self.init_head(in_chs, global_pool)

        self.init_weights(weight_init, zero_init_last)

    @torch.jit.ignore
    def init_weights(self, weight_init: str = 'he', zero_init_last: bool = False) -> None:
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f'unknown weight_init {weight_init!r}: use one of {sorted(WEIGHT_INITS)}')
        mode, with_linear, zero_bias = WEIGHT_INITS[weight_init]
        kinds = (nn.Conv2d, nn.Linear) if with_linear else (nn.Conv2d,)
        for m in self.modules():
            if isinstance(m, kinds):
                if mode is not None:
                    nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity='relu')
                if zero_bias and m.bias is not None:
                    nn.init.zeros_(m.bias)
        if zero_init_last:
            self.zero_init_residual_branches()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [(r'^stages\.(\d+)\.(\d+)', None), (r'^norm', (99999,))],
        )

    def forward_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(x))

    def remove_norm(self) -> None:
        self.norm, self.act = nn.Identity(), nn.Identity()


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    feature_cfg = dict(flatten_sequential=True, out_indices=tuple(range(len(kwargs['layers']))))
    return create_cifar_model(CifarResNet, variant, pretrained, default_feature_cfg=feature_cfg, **kwargs)


def _cfg(origin_url: str, license: str, *papers: str) -> Dict[str, Any]:
    return cifar_cfg(
        first_conv='stem.conv', classifier='head.fc',
        origin_url=origin_url, paper_ids=', '.join(papers), license=license)


HE, TRICKS, MISH, SE, RESNEXT = (
    'arXiv:1512.03385', 'arXiv:1812.01187', 'arXiv:1908.08681', 'arXiv:1709.01507', 'arXiv:1611.05431')
_he_cfg = partial(_cfg, 'https://github.com/akamaster/pytorch_resnet_cifar10', 'bsd-2-clause', HE)
_tricks_cfg = partial(_cfg, 'https://github.com/iamVarunAnand/image_classification', 'mit', HE, TRICKS)
# fattorib's repository has no licence file (all rights reserved): no licence to name, and its weights are for
# measurement only (docs/peer_checkpoints.md)
_fattorib_cfg = partial(_cfg, 'https://github.com/fattorib/ResNets-CIFAR10', None, HE)

_he_note = 'He et al. 2016, Table 6 (CIFAR-10 test)'
_tricks_note = 'iamVarunAnand README, final-epoch CIFAR-10 test (trained on 45k)'
_fattorib_note = 'fattorib README, final-epoch CIFAR-10 test (trained on 47.5k)'
default_cfgs = cifar_default_cfgs(
    {
        **{f'resnet{d}': _he_cfg() for d in (20, 32, 44, 56, 110, 1202)},
        **{f'resnet{d}_fattorib': _fattorib_cfg() for d in (20, 32, 44, 56)},
        **{f'xresnet{d}': _tricks_cfg() for d in (20, 32, 44, 56)},
        **{f'mxresnet{d}': _tricks_cfg(MISH) for d in (20, 32, 44, 56)},
        **{f'se_mxresnet{d}': _tricks_cfg(MISH, SE) for d in (20, 32, 44, 56)},
        'xresnet29': _tricks_cfg(),
        **{f'xresnext29_{c}': _tricks_cfg(RESNEXT) for c in ('2x10d', '4x6d', '16x2d')},
        'se_mxresnext29_16x2d': _tricks_cfg(RESNEXT, MISH, SE),
        'efficient_resnet24': _cfg('https://github.com/Nikunj-Gupta/Efficient_ResNets', 'mit', 'arXiv:2306.12100'),
        'resnet18_cifar': _cfg('https://github.com/pytorch/vision', 'bsd-3-clause', HE),
        'resnet50_4s': _cfg('https://github.com/culpritgene/fineopia', 'gpl-3.0', HE),
    },
    source_top1={
        'resnet20': SourceResult(91.25, _he_note),
        'resnet32': SourceResult(92.49, _he_note),
        'resnet44': SourceResult(92.83, _he_note),
        'resnet56': SourceResult(93.03, _he_note),
        'resnet110': SourceResult(93.57, _he_note + ', best of 5 runs (mean 93.39)'),
        'resnet1202': SourceResult(92.07, _he_note),
        'resnet20_fattorib': SourceResult(91.43, _fattorib_note),
        'resnet32_fattorib': SourceResult(92.18, _fattorib_note),
        'resnet44_fattorib': SourceResult(92.80, _fattorib_note),
        'resnet56_fattorib': SourceResult(92.50, _fattorib_note),
        'xresnet20': SourceResult(91.82, _tricks_note + ', step-LR base recipe'),
        'mxresnet20': SourceResult(92.07, _tricks_note + ', step-LR base recipe'),
        'se_mxresnet20': SourceResult(93.10, _tricks_note + ', full recipe (released checkpoint)'),
        'se_mxresnet32': SourceResult(93.80, _tricks_note + ', full recipe'),
        'se_mxresnet44': SourceResult(93.88, _tricks_note + ', full recipe'),
        'se_mxresnet56': SourceResult(94.36, _tricks_note + ', full recipe'),
        'xresnet29': SourceResult(92.38, _tricks_note + ', recipe not stated'),
        'xresnext29_16x2d': SourceResult(93.30, _tricks_note + ', recipe not stated'),
        'se_mxresnext29_16x2d': SourceResult(94.68, _tricks_note + ', full recipe'),
        'efficient_resnet24': SourceResult(96.04, 'best epoch chosen on the test set'),
    },
)


# He et al. option A (spec §4.1): post-act basic blocks, parameter-free shortcut, 16/32/64 channels.
def _he_args(n: int) -> Dict[str, Any]:
    return dict(block=BasicBlock, layers=(n,) * 3, widths=(16, 32, 64))


@register_model
def resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20, He et al. option A (269,722 params). `block_dropout` gives fineopia's Dropout2d variant."""
    return _create_cifar_resnet('resnet20', pretrained, **dict(_he_args(3), **kwargs))


@register_model
def resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32, He et al. option A."""
    return _create_cifar_resnet('resnet32', pretrained, **dict(_he_args(5), **kwargs))


@register_model
def resnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-44, He et al. option A."""
    return _create_cifar_resnet('resnet44', pretrained, **dict(_he_args(7), **kwargs))


@register_model
def resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56, He et al. option A."""
    return _create_cifar_resnet('resnet56', pretrained, **dict(_he_args(9), **kwargs))


@register_model
def resnet110(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110, He et al. option A."""
    return _create_cifar_resnet('resnet110', pretrained, **dict(_he_args(18), **kwargs))


@register_model
def resnet1202(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-1202, He et al. option A (19.4M params)."""
    return _create_cifar_resnet('resnet1202', pretrained, **dict(_he_args(200), **kwargs))


# fattorib (spec §4.2): He's blocks and option-A shortcut, but stages 1 and 2 end with the stride-2 block.
def _fattorib_args(n: int) -> Dict[str, Any]:
    return dict(_he_args(n), stage_downsample='last')


@register_model
def resnet20_fattorib(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 as fattorib/ResNets-CIFAR10 built it: downsampling at the end of stages 1 and 2 (304,378 params)."""
    return _create_cifar_resnet('resnet20_fattorib', pretrained, **dict(_fattorib_args(3), **kwargs))


@register_model
def resnet32_fattorib(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32, fattorib's layout."""
    return _create_cifar_resnet('resnet32_fattorib', pretrained, **dict(_fattorib_args(5), **kwargs))


@register_model
def resnet44_fattorib(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-44, fattorib's layout."""
    return _create_cifar_resnet('resnet44_fattorib', pretrained, **dict(_fattorib_args(7), **kwargs))


@register_model
def resnet56_fattorib(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56, fattorib's layout."""
    return _create_cifar_resnet('resnet56_fattorib', pretrained, **dict(_fattorib_args(9), **kwargs))


# Bag-of-tricks family, seed 1 (spec §2): pre-act blocks, ResNet-D shortcut, Keras BN/SE/init, [avg, max] head.
def _tricks_args(block: BlockType, n: int, mish: bool = False, se: bool = False, **kwargs: Any) -> Dict[str, Any]:
    bottleneck = block is PreActBottleneck
    model_args = dict(
        block=block, layers=(n,) * 3,
        widths=(64, 128, 256) if bottleneck else (16, 32, 64), stem_width=64 if bottleneck else 16,
        stem_layers=('conv',), shortcut='avg_conv', stage1_proj=bottleneck, shortcut_norm_layer=KERAS_DEFAULT_BN,
        act_layer=FastMish if mish else nn.ReLU, norm_layer=KERAS_BN, attn_layer=KERAS_SE if se else None,
        global_pool='fastcatavgmax', weight_init='keras_he_normal',
    )
    return dict(model_args, **kwargs)


@register_model
def xresnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNet-20 (bag-of-tricks CIFAR ResNet, ReLU)."""
    return _create_cifar_resnet('xresnet20', pretrained, **dict(_tricks_args(PreActBasicBlock, 3), **kwargs))


@register_model
def xresnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNet-32."""
    return _create_cifar_resnet('xresnet32', pretrained, **dict(_tricks_args(PreActBasicBlock, 5), **kwargs))


@register_model
def xresnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNet-44."""
    return _create_cifar_resnet('xresnet44', pretrained, **dict(_tricks_args(PreActBasicBlock, 7), **kwargs))


@register_model
def xresnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNet-56."""
    return _create_cifar_resnet('xresnet56', pretrained, **dict(_tricks_args(PreActBasicBlock, 9), **kwargs))


@register_model
def mxresnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """MXResNet-20: XResNet-20 with Mish."""
    model_args = _tricks_args(PreActBasicBlock, 3, mish=True)
    return _create_cifar_resnet('mxresnet20', pretrained, **dict(model_args, **kwargs))


@register_model
def mxresnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """MXResNet-32."""
    model_args = _tricks_args(PreActBasicBlock, 5, mish=True)
    return _create_cifar_resnet('mxresnet32', pretrained, **dict(model_args, **kwargs))


@register_model
def mxresnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """MXResNet-44."""
    model_args = _tricks_args(PreActBasicBlock, 7, mish=True)
    return _create_cifar_resnet('mxresnet44', pretrained, **dict(model_args, **kwargs))


@register_model
def mxresnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """MXResNet-56."""
    model_args = _tricks_args(PreActBasicBlock, 9, mish=True)
    return _create_cifar_resnet('mxresnet56', pretrained, **dict(model_args, **kwargs))


@register_model
def se_mxresnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-MXResNet-20 in the released-checkpoint layout (spec §2.3): stage-1 projection, no shortcut BN."""
    model_args = _tricks_args(PreActBasicBlock, 3, mish=True, se=True, stage1_proj=True, shortcut_bn=False)
    return _create_cifar_resnet('se_mxresnet20', pretrained, **dict(model_args, **kwargs))


@register_model
def se_mxresnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-MXResNet-32 (committed-code layout)."""
    model_args = _tricks_args(PreActBasicBlock, 5, mish=True, se=True)
    return _create_cifar_resnet('se_mxresnet32', pretrained, **dict(model_args, **kwargs))


@register_model
def se_mxresnet44(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-MXResNet-44 (committed-code layout)."""
    model_args = _tricks_args(PreActBasicBlock, 7, mish=True, se=True)
    return _create_cifar_resnet('se_mxresnet44', pretrained, **dict(model_args, **kwargs))


@register_model
def se_mxresnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-MXResNet-56 (committed-code layout)."""
    model_args = _tricks_args(PreActBasicBlock, 9, mish=True, se=True)
    return _create_cifar_resnet('se_mxresnet56', pretrained, **dict(model_args, **kwargs))


@register_model
def xresnet29(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNet-29: bottleneck XResNet, 64-channel stem (spec §2.6), mid width out/4."""
    model_args = _tricks_args(PreActBottleneck, 3, cardinality=1, base_width=16)
    return _create_cifar_resnet('xresnet29', pretrained, **dict(model_args, **kwargs))


@register_model
def xresnext29_2x10d(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNeXt-29 2x10d."""
    model_args = _tricks_args(PreActBottleneck, 3, cardinality=2, base_width=10)
    return _create_cifar_resnet('xresnext29_2x10d', pretrained, **dict(model_args, **kwargs))


@register_model
def xresnext29_4x6d(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNeXt-29 4x6d."""
    model_args = _tricks_args(PreActBottleneck, 3, cardinality=4, base_width=6)
    return _create_cifar_resnet('xresnext29_4x6d', pretrained, **dict(model_args, **kwargs))


@register_model
def xresnext29_16x2d(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """XResNeXt-29 16x2d."""
    model_args = _tricks_args(PreActBottleneck, 3, cardinality=16, base_width=2)
    return _create_cifar_resnet('xresnext29_16x2d', pretrained, **dict(model_args, **kwargs))


@register_model
def se_mxresnext29_16x2d(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """SE-MXResNeXt-29 16x2d: XResNeXt-29 16x2d with Mish and SE."""
    model_args = _tricks_args(PreActBottleneck, 3, mish=True, se=True, cardinality=16, base_width=2)
    return _create_cifar_resnet('se_mxresnext29_16x2d', pretrained, **dict(model_args, **kwargs))


@register_model
def efficient_resnet24(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Efficient ResNet (spec §6): [4, 4, 3] x 64/128/256 basic blocks, one SE after the stem."""
    model_args = dict(
        block=BasicBlock, layers=(4, 4, 3), widths=(64, 128, 256), stem_width=64,
        stem_layers=('conv', 'norm', 'act', 'attn'), stem_attn_layer=STEM_SE, shortcut='conv', weight_init='torch',
    )
    return _create_cifar_resnet('efficient_resnet24', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18, torchvision layout with a 3x3 stride-1 stem and no max-pool."""
    model_args = dict(
        block=BasicBlock, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem_width=64, shortcut='conv',
        weight_init='torchvision',
    )
    return _create_cifar_resnet('resnet18_cifar', pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_4s(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """fineopia "MyResNet" (spec §5.4): (5, 7, 7, 5) x 32..256 blocks, biased convs, Dropout2d 0.15."""
    model_args = dict(
        block=BasicBlock, layers=(5, 7, 7, 5), widths=(32, 64, 128, 256), stem_width=16,
        stem_layers=('conv', 'act', 'norm'), conv_bias=True, block_dropout=0.15,
    )
    return _create_cifar_resnet('resnet50_4s', pretrained, **dict(model_args, **kwargs))
