"""`cifar-timm list`: the registered architectures with their size, compute, published weights and the top-1 their
source project reports; `--pretrained` lists the published weights (`name.tag`) with their measured accuracy.

MACs are counted by PyTorch's own `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2) on one image of
the model's default input size, i.e. conv and linear multiply-accumulates only, the convention of
../shared/specs/architectures.md (resnet20: 40.55M). Models are built on the `meta` device, so counting needs no
memory or arithmetic, only the trace.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from fnmatch import fnmatch
from typing import Any, Optional

import timm
import torch
from timm.models import split_model_name_tag
from torch.utils.flop_counter import FlopCounterMode

from .. import list_models
from ..constants import CIFAR10_NAME, EXACT_TEST_SLICE
from ..errors import CifarTimmError
from ..hub import load_pretrained_tags, pretrained_tags_file
from ..models import SOURCE_RESULTS

HELP = 'List the architectures: params, MACs per image, published weights and the source\'s top-1.'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('patterns', nargs='*', metavar='PATTERN',
                        help="only names matching these shell-style patterns, e.g. 'resnet*' or '*densenet*'")
    parser.add_argument('--pretrained', action='store_true',
                        help='list the published weights (name.tag) with their measured accuracy instead')
    parser.add_argument('--json', action='store_true', help='print machine-readable JSON')


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        rows = published_weights(args.patterns)
        if args.json:
            print(json.dumps(rows, indent=2))
            if not rows:  # still say why the list is empty, without breaking the JSON on stdout
                print(format_published(rows, args.patterns), file=sys.stderr)
        else:
            print(format_published(rows, args.patterns))
    else:
        rows = architectures(args.patterns)
        print(json.dumps(rows, indent=2) if args.json else format_architectures(rows))
    return 0


def model_size(name: str, **model_args: Any) -> tuple[int, int]:
    """(params, MACs for one image of the model's default input size) of a registered architecture."""
    with torch.device('meta'):
        model = timm.create_model(name, **model_args).eval()  # eval: BN needs no batch statistics of a 1-image batch
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty((1, *model.pretrained_cfg['input_size']), device='meta'))
    return params, counter.get_total_flops() // 2


@functools.lru_cache(maxsize=None)
def registered_size(name: str) -> tuple[int, int]:
    """`model_size` of a registered architecture with its default arguments, counted once per process (the tables
    and the plot each need every architecture's)."""
    return model_size(name)


def architectures(patterns: list[str]) -> list[dict[str, Any]]:
    """One record per registered architecture matching `patterns` (all when empty)."""
    names = [n for n in list_models() if _matches(n, patterns)]
    if not names:
        raise _no_match(patterns)
    published = [split_model_name_tag(t) for t in load_pretrained_tags()]
    rows = []
    for name in names:
        params, macs = registered_size(name)
        source = SOURCE_RESULTS.get(name)
        rows.append(dict(
            name=name,
            params=params,
            macs=macs,
            pretrained_tags=sorted(tag for model, tag in published if model == name),
            source_top1=source.top1 if source else None,
            source_note=source.note if source else None,
        ))
    return rows


def published_weights(patterns: list[str]) -> list[dict[str, Any]]:
    """One record per published weight (`name.tag`) whose name or architecture matches `patterns`."""
    known = set(list_models())
    rows = []
    for name_tag, record in sorted(load_pretrained_tags().items()):
        model, _ = split_model_name_tag(name_tag)
        if not (_matches(name_tag, patterns) or _matches(model, patterns)):
            continue
        params, macs = record.get('params'), record.get('macs')  # counted by `cifar-timm export`, with the run's args
        if (params is None or macs is None) and model in known:  # a record written before export stored them
            params, macs = registered_size(model)
        results = record.get('results', {})
        rows.append(dict(
            name=name_tag,
            model=model,
            hf_hub_id=record.get('hf_hub_id'),
            params=params,
            macs=macs,
            top1_exact=results.get('top1_exact'),
            top1_exact_ci95=results.get('top1_exact_ci95'),
            top1_test=results.get('top1_test'),
            top1_val=results.get('top1_val'),
            epochs=results.get('epochs'),
            train_time_s=results.get('train_time_s'),
            hardware=results.get('hardware'),
            dataset=record.get('dataset', CIFAR10_NAME),  # weights exported from a run on the user's own images
        ))
    return rows


def format_architectures(rows: list[dict[str, Any]]) -> str:
    table = [('name', 'params', 'MACs', 'pretrained', 'source top-1 %')]
    for r in rows:
        table.append((
            r['name'], f"{r['params']:,}", _si(r['macs']), ','.join(r['pretrained_tags']) or '-',
            '-' if r['source_top1'] is None else f"{r['source_top1']:.2f}",
        ))
    return _table(table, right=(1, 2, 4)) + '\nMACs: conv+linear multiply-accumulates per 32x32 image.'


def format_published(rows: list[dict[str, Any]], patterns: list[str]) -> str:
    if not rows:
        where = f" matching {' '.join(patterns)}" if patterns else ''
        return (f'No pretrained weights{where} are published yet (none recorded in {pretrained_tags_file()}); '
                '`cifar-timm export RUN_DIR` publishes a trained run.')
    table = [('name', 'params', 'MACs', 'top-1 exact % (95% CI)', 'top-1 test %', 'hf_hub_id')]
    for r in rows:
        exact = '-' if r['top1_exact'] is None else f"{r['top1_exact']:.2f}"
        if r['top1_exact_ci95']:
            exact += ' ({:.1f}-{:.1f})'.format(*r['top1_exact_ci95'])
        table.append((
            r['name'], '-' if r['params'] is None else f"{r['params']:,}", _si(r['macs']), exact,
            '-' if r['top1_test'] is None else f"{r['top1_test']:.2f}", r['hf_hub_id'] or '-',
        ))
    return (_table(table, right=(1, 2, 4))
            + f'\ntop-1 exact: on test images 0-{EXACT_TEST_SLICE.stop - 1}, the ones known to be exact in the shared '
            'CIFAR-10 copy.')


def _matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch(name, p) for p in patterns)


def _no_match(patterns: list[str]) -> Exception:
    return CifarTimmError(
        f"no architecture matches {' '.join(repr(p) for p in patterns)}; "
        '`cifar-timm list` without a pattern shows every name (patterns are shell-style: resnet*, *densenet*)')


def _si(value: Optional[int]) -> str:
    if value is None:
        return '-'
    return f'{value / 1e9:.2f}G' if value >= 1e9 else f'{value / 1e6:.2f}M'


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append('  '.join(cells).rstrip())
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)
