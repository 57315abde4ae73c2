"""The source projects whose published checkpoints convert into cifar-timm models: how each file is read, how its
tensor names map onto ours, which preprocessing its weights were trained with, and its licence.

The mappings follow ../shared/specs/architectures.md (§2.3 for the Keras net, §4 for akamaster and fattorib) and
../shared/peer_weights/README.md, which checked them against each source's own forward pass. Each rule returns our
tensor name, or None when no rule knows the name (the converter then reports it as an extra tensor).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..constants import CIFAR10_MEAN, CIFAR10_STD
from .readers import read_keras_weights, read_torch_checkpoint

# torchvision's ImageNet statistics: akamaster and fattorib normalised CIFAR-10 with them
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PeerSource:
    """A source project whose checkpoints the converter reads (`--from name`)."""
    name: str
    origin_url: str
    license: Optional[str]  # SPDX-style id of the weights' licence; None: the repository has none
    license_note: str  # what the licence asks of whoever uses or shares converted weights
    models: tuple[str, ...]  # the cifar-timm architectures its checkpoints are
    read: Callable[[Path], dict[str, torch.Tensor]]
    rename: Callable[[str, tuple[int, ...]], Optional[str]]  # (source name, our blocks per stage) -> our name
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    unused: tuple[str, ...] = ()  # regexes of tensors the file holds but the source's forward never reads
    transform: Callable[[str, torch.Tensor], torch.Tensor] = lambda name, tensor: tensor

    @property
    def repo(self) -> str:
        """'owner/name' of the source's GitHub repository."""
        return self.origin_url.removeprefix('https://github.com/')


def _rename_module(name: str, table: dict[str, str]) -> Optional[str]:
    """'bn1.weight' -> 'stem.norm.weight' when table maps the module 'bn1' to 'stem.norm'."""
    module, _, param = name.rpartition('.')
    return f'{table[module]}.{param}' if module in table else None


# akamaster/pytorch_resnet_cifar10: saved from inside nn.DataParallel (the `module.` prefix); layer1..3 are stages.
def akamaster_name(name: str, depths: tuple[int, ...]) -> Optional[str]:
    name = name.removeprefix('module.')
    if m := re.fullmatch(r'layer(\d+)\.(\d+)\.(.+)', name):
        return f'stages.{int(m[1]) - 1}.{m[2]}.{m[3]}'
    return _rename_module(name, {'conv1': 'stem.conv', 'bn1': 'stem.norm', 'linear': 'head.fc'})


# fattorib/ResNets-CIFAR10: each stage holds residual_block.0..n-2 and the final (downsampling) block, each an
# nn.Sequential(conv, BN, ReLU, conv, BN).
_FATTORIB_STAGES = {'first_block': 0, 'second_block': 1, 'third_block': 2}
_FATTORIB_LAYERS = {'0': 'conv1', '1': 'bn1', '3': 'conv2', '4': 'bn2'}


def fattorib_name(name: str, depths: tuple[int, ...]) -> Optional[str]:
    m = re.fullmatch(r'(\w+_block)\.(?:residual_block\.(\d+)|final_block)\.(\d+)\.(\w+)', name)
    if m and m[1] in _FATTORIB_STAGES and m[3] in _FATTORIB_LAYERS:
        stage = _FATTORIB_STAGES[m[1]]
        block = int(m[2]) if m[2] is not None else depths[stage] - 1
        return f'stages.{stage}.{block}.{_FATTORIB_LAYERS[m[3]]}.{m[4]}'
    return _rename_module(name, {'first_layer': 'stem.conv', 'bn': 'stem.norm', 'fc': 'head.fc'})


# iamVarunAnand/image_classification (Keras): layers `stage{S}_res_block{B}_<part>`, counted from 1.
_KERAS_TOP = {'stem_conv': 'stem.conv', 'final_bn': 'norm', 'classifier': 'head.fc'}
_KERAS_BLOCK = {'bn1': 'bn1', 'conv1': 'conv1', 'bn2': 'bn2', 'conv2': 'conv2', 'red': 'downsample.conv',
                'se_block_squeeze': 'se.fc1', 'se_block_excite': 'se.fc2'}
_KERAS_WEIGHTS = {'kernel': 'weight', 'bias': 'bias', 'gamma': 'weight', 'beta': 'bias',
                  'moving_mean': 'running_mean', 'moving_variance': 'running_var'}


def keras_name(name: str, depths: tuple[int, ...]) -> Optional[str]:
    layer, _, weight = name.rpartition('/')
    if m := re.fullmatch(r'stage(\d+)_res_block(\d+)_(\w+)', layer):
        part = _KERAS_BLOCK.get(m[3])
        module = part and f'stages.{int(m[1]) - 1}.{int(m[2]) - 1}.{part}'
    else:
        module = _KERAS_TOP.get(layer)
    return f'{module}.{_KERAS_WEIGHTS[weight]}' if module and weight in _KERAS_WEIGHTS else None


def keras_tensor(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Keras kernels to PyTorch layouts: conv HWIO -> OIHW, dense (in, out) -> (out, in); the SE block's dense
    layers become the 1x1 convs of timm's SEModule."""
    if not name.endswith('/kernel'):
        return tensor
    if tensor.ndim == 4:
        return tensor.permute(3, 2, 0, 1).contiguous()
    tensor = tensor.t().contiguous()
    return tensor[:, :, None, None] if '_se_block_' in name else tensor


SOURCES: dict[str, PeerSource] = {s.name: s for s in (
    PeerSource(
        name='akamaster', origin_url='https://github.com/akamaster/pytorch_resnet_cifar10', license='bsd-2-clause',
        license_note='BSD-2-Clause, (c) 2018 Yerlan Idelbayev: keep the copyright notice, the conditions and the '
                     'disclaimer with any copy of these weights you share.',
        models=('resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'resnet1202'),
        read=read_torch_checkpoint, rename=akamaster_name, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    PeerSource(
        name='fattorib', origin_url='https://github.com/fattorib/ResNets-CIFAR10', license=None,
        license_note='The repository has no licence file, so its weights are all rights reserved: use the '
                     'conversion for your own measurement only, and do not publish it or models started from it.',
        models=('resnet20_fattorib', 'resnet32_fattorib', 'resnet44_fattorib', 'resnet56_fattorib'),
        read=read_torch_checkpoint, rename=fattorib_name, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        # `conv_block` is the template the residual blocks were deep-copied from; `bn` a BN no forward uses
        unused=(r'\w+_block\.conv_block\..+', r'\w+_block\.bn\..+')),
    PeerSource(
        name='keras', origin_url='https://github.com/iamVarunAnand/image_classification', license='mit',
        license_note='MIT, (c) 2020 Varun Anand: keep the copyright and permission notice with any copy of these '
                     'weights you share.',
        # only the released SE-MXResNet20 checkpoint's layer names are known (spec §2.3)
        models=('se_mxresnet20',),
        read=read_keras_weights, rename=keras_name, transform=keras_tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD),
)}


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A checkpoint a source published: where ../shared/peer_weights keeps it, its model and sha256, and the top-1
    (%) the source's README claims for it (on the full official test set)."""
    path: str
    source: str
    model: str
    sha256: str
    claimed_top1: float


_AKA, _FAT, _KERAS = ('akamaster__pytorch_resnet_cifar10', 'fattorib__ResNets-CIFAR10',
                      'iamVarunAnand__image_classification')
PUBLISHED_CHECKPOINTS = (
    PublishedCheckpoint(f'{_AKA}/resnet20-12fca82f.th', 'akamaster', 'resnet20',
                        '12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8', 91.73),
    PublishedCheckpoint(f'{_AKA}/resnet32-d509ac18.th', 'akamaster', 'resnet32',
                        'd509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850', 92.63),
    PublishedCheckpoint(f'{_AKA}/resnet44-014dd654.th', 'akamaster', 'resnet44',
                        '014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4', 93.10),
    PublishedCheckpoint(f'{_AKA}/resnet56-4bfd9763.th', 'akamaster', 'resnet56',
                        '4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367', 93.39),
    PublishedCheckpoint(f'{_FAT}/resnet20.pth', 'fattorib', 'resnet20_fattorib',
                        '9e37644d4807172ab734625ddfe92adfd4f1fc27d131e33490f41eb7d900e9ab', 91.43),
    PublishedCheckpoint(f'{_FAT}/resnet32.pth', 'fattorib', 'resnet32_fattorib',
                        '654fb06810b32bc03f4a459dc2619c32c2c1599f43d12825b3d36cbc60d4af4e', 92.18),
    PublishedCheckpoint(f'{_FAT}/resnet44.pth', 'fattorib', 'resnet44_fattorib',
                        '746a5381d4c5d81435b9cd67cf15f14953340a0e5e79e9d8bf83c944838a20c7', 92.80),
    PublishedCheckpoint(f'{_FAT}/resnet56.pth', 'fattorib', 'resnet56_fattorib',
                        '986216855dcd30842042ccb0aeadcc2c0980caab696bc28f918772cf4512c0a3', 92.50),
    PublishedCheckpoint(f'{_KERAS}/se-mxresnet20_180.h5', 'keras', 'se_mxresnet20',
                        '67bc07adb44da8dc1b637fec7b831a2a65a2343d2eb48eda6a3135ace456463f', 93.10),
)
