"""`cifar-timm eval`: accuracy, top-5, NLL, ECE and speed of a model on a CIFAR-10 split or slice of it.

`--indices 0:1017` selects the test images whose pixels are exact in the shared copy (see ../shared/cifar10); for
any slice the top-1 comes with its 95% Wilson interval.
"""
from __future__ import annotations

import argparse
import json

import torch

from ..data import load_cifar10, parse_index_slice, train_val_indices
from ..errors import CifarTimmError
from ..evaluation import create_eval_model, evaluate
from ._options import add_weight_arguments, resolve_device

HELP = 'evaluate a model on CIFAR-10 (top-1 with 95% interval, top-5, NLL, ECE, images/s)'
SPLITS = ('test', 'val', 'train')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='timm model name, e.g. resnet20 or resnet20.c10')
    add_weight_arguments(parser)
    parser.add_argument('--data-dir', required=True, help='folder that holds cifar-10-batches-py/')
    parser.add_argument('--split', default='test', choices=SPLITS,
                        help='test (10,000), val (the 5,000 held out by train_val_indices) or train (all 50,000)')
    parser.add_argument('--indices', default=None, metavar='START:STOP',
                        help='evaluate only this slice of the split, e.g. 0:1017 (the exact test images)')
    parser.add_argument('--tta', action='store_true', help='average the prediction of each image and its flip')
    parser.add_argument('--batch-size', type=int, default=500)
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1... (default: cuda when available)')
    parser.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    parser.add_argument('--no-verify-md5', dest='verify_md5', action='store_false',
                        help='skip the official md5 check (needed for the shared rebuilt copy)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CifarTimmError('--batch-size must be >= 1')
    device = resolve_device(args.device)
    source_split = 'test' if args.split == 'test' else 'train'
    data = load_cifar10(args.data_dir, source_split, verify_md5=args.verify_md5)
    images, labels = data.images, data.labels
    if args.split == 'val':  # `train` is the whole training set: nothing to select
        _, val_idx = train_val_indices(len(labels))
        images, labels = images[val_idx], labels[val_idx]
    span = parse_index_slice(args.indices, len(labels)) if args.indices else slice(0, len(labels))
    images, labels = images[span], labels[span]

    model = create_eval_model(args.model, pretrained=args.pretrained, checkpoint=args.checkpoint)
    metrics = evaluate(
        model, images, labels, batch_size=args.batch_size, device=device,
        amp_dtype=torch.bfloat16 if args.amp else None, tta=args.tta, progress=not args.json)
    report = {
        'model': args.model,
        'weights': 'pretrained' if args.pretrained else (args.checkpoint or 'random init'),
        'split': args.split,
        'indices': f'{span.start}:{span.stop}',
        'tta': args.tta,
        'device': str(device),
        **metrics,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def format_report(r: dict) -> str:
    lo, hi = r['top1_ci95']
    return '\n'.join([
        f"{r['model']} ({r['weights']}) on {r['split']}[{r['indices']}], n={r['n']}, "
        f"device={r['device']}{', TTA' if r['tta'] else ''}",
        f"  top-1     {r['top1']:.2f}%  ({r['correct']}/{r['n']}, 95% CI {lo:.2f}-{hi:.2f}%)",
        f"  top-5     {r['top5']:.2f}%",
        f"  NLL       {r['nll']:.4f}",
        f"  ECE       {r['ece']:.2f}%",
        f"  images/s  {r['images_per_s']:.0f}",
    ])
