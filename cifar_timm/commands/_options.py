"""Command-line options that several commands share: which weights to load and which device to run on."""
from __future__ import annotations

import argparse

import torch

from ..errors import CifarTimmError


def add_weight_arguments(parser: argparse.ArgumentParser) -> None:
    """--pretrained / --checkpoint, for `eval` and `predict`."""
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--pretrained', action='store_true', help='load the published weights (timm pretrained=True)')
    weights.add_argument('--checkpoint', default=None, metavar='PATH', help='a .safetensors or torch state_dict file')


def resolve_device(name: str | None) -> torch.device:
    """The device a user asked for (default: cuda when there is one), or a clear error."""
    if name is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise CifarTimmError(f'--device {name!r} is not a torch device ({e}): use cpu or cuda[:N]') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise CifarTimmError(f'--device {name}: no CUDA GPU is available here; use --device cpu')
    return device
