"""`cifar-timm predict`: top-k CIFAR-10 labels with probabilities for image files of any size.

Each image is read as 8-bit RGB by `cifar_timm.images` (16-bit and float grey scaled, transparency on white,
decompression bombs refused), then goes through the model's own eval transform (timm's `resolve_data_config` +
`create_transform` on its pretrained_cfg: resize the shorter side to 32, centre crop, normalise), so what the model
sees matches training.
"""
from __future__ import annotations

import argparse
import json

import torch

from ..constants import CIFAR10_CLASSES
from ..evaluation import create_eval_model
from ..images import open_rgb
from ._options import add_weight_arguments, resolve_device

HELP = 'top-k CIFAR-10 labels and probabilities for PNG/JPEG images of any size'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='timm model name, e.g. resnet20 or resnet20.c10')
    parser.add_argument('images', nargs='+', metavar='IMAGE', help='PNG/JPEG (any format PIL reads), any size')
    add_weight_arguments(parser)
    parser.add_argument('--top-k', type=int, default=5)
    parser.add_argument('--device', default=None, help='cpu, cuda... (default: cuda when available)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')


def run(args: argparse.Namespace) -> int:
    from timm.data import create_transform, resolve_data_config

    device = resolve_device(args.device)
    images = [open_rgb(path) for path in args.images]  # fail on a bad file before building the model
    model = create_eval_model(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint)
    model.to(device).eval()
    transform = create_transform(**resolve_data_config(model=model))
    batch = torch.stack([transform(image) for image in images]).to(device)
    with torch.inference_mode():
        probs = model(batch).float().softmax(dim=1).cpu()
    names = class_names(model, probs.shape[1])
    k = max(1, min(args.top_k, probs.shape[1]))
    top = probs.topk(k, dim=1)
    results = [
        {'image': path, 'predictions': [
            {'label': names[i], 'index': int(i), 'probability': float(p)} for p, i in zip(values, indices)]}
        for path, values, indices in zip(args.images, top.values.tolist(), top.indices.tolist())
    ]
    if args.json:
        print(json.dumps({'model': args.model, 'results': results}, indent=2))
    else:
        for result in results:
            print(result['image'])
            for pred in result['predictions']:
                print(f"  {pred['label']:<12} {pred['probability']:.4f}")
    return 0


def class_names(model: torch.nn.Module, num_outputs: int) -> list[str]:
    """Label names from the model's pretrained_cfg, else CIFAR-10's for a 10-way model, else `class N`."""
    names = (getattr(model, 'pretrained_cfg', None) or {}).get('label_names')
    if names is None and num_outputs == len(CIFAR10_CLASSES):
        names = CIFAR10_CLASSES
    if names is None or len(names) != num_outputs:
        names = [f'class {i}' for i in range(num_outputs)]
    return list(names)
