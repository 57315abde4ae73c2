"""Inference throughput (images/s) of every registered cifar-timm model at a few batch sizes and precisions, as a
markdown table and a JSON file.

Each cell is `cifar-timm bench` (cifar_timm.commands.bench.measure_inference): random weights and input,
`--warmup` untimed forward passes, then `--repeats` timed ones; on GPU each pass is timed with CUDA events, on CPU
with perf_counter. A cell shows the median images/s and, in brackets, the spread (slowest and fastest pass).
Defaults: on GPU batch 1 and 1024, fp32 and bf16 autocast, channels_last, cuDNN autotuning on; on CPU batch 1 and
256, fp32. One cell is reproduced by the `cifar-timm bench` command printed under the table.

    python benchmarks/bench_inference.py --out benchmarks/results/inference-h100
    python benchmarks/bench_inference.py --device cpu --models resnet20,resnet56 --repeats 5
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path
from typing import Any, Optional

import torch

PRECISIONS = {'fp32': False, 'bf16': True}  # name -> bfloat16 autocast


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default=None, help='cpu, cuda... (default: cuda when available)')
    parser.add_argument('--models', default='*',
                        help='comma-separated names or fnmatch patterns of registered models (default: all)')
    parser.add_argument('--batch-sizes', default=None, help='default: 1,1024 on GPU, 1,256 on CPU')
    parser.add_argument('--precisions', default=None, help='fp32, bf16 or both (default: both on GPU, fp32 on CPU)')
    parser.add_argument('--memory-format', choices=['channels_last', 'contiguous'], default='channels_last')
    parser.add_argument('--compile', action='store_true', help='torch.compile each model (compile time excluded)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed passes per cell')
    parser.add_argument('--repeats', type=int, default=20, help='timed passes per cell')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads on CPU')
    parser.add_argument('--out', type=Path, default=None,
                        help='write OUT.json and OUT.md (e.g. benchmarks/results/inference-h100)')
    return parser.parse_args(argv)


def select_models(patterns: str) -> list[str]:
    import cifar_timm
    from cifar_timm.errors import CifarTimmError
    names = cifar_timm.list_models()
    chosen = []
    for pattern in [p.strip() for p in patterns.split(',') if p.strip()]:
        matches = fnmatch.filter(names, pattern)
        if not matches:
            raise CifarTimmError(f'--models: {pattern!r} matches no registered model; `cifar-timm list` shows them')
        chosen += [m for m in matches if m not in chosen]
    return chosen


def parse_precisions(text: str) -> list[str]:
    from cifar_timm.errors import CifarTimmError
    names = [p.strip() for p in text.split(',') if p.strip()]
    if not names or any(p not in PRECISIONS for p in names):
        raise CifarTimmError(f'--precisions {text!r}: use fp32, bf16 or fp32,bf16')
    return names


def measure_cell(name: str, device: torch.device, batch_sizes: list[int], precision: str, args) -> dict[str, Any]:
    """One model at one precision, every batch size; an out-of-memory batch size is recorded, not fatal."""
    from cifar_timm.commands.bench import measure_inference
    options = dict(channels_last=args.memory_format == 'channels_last', compile=args.compile,
                   amp=PRECISIONS[precision], warmup=args.warmup, repeats=args.repeats)
    rows, report = [], None
    for batch_size in batch_sizes:
        try:
            report = measure_inference(name, device, [batch_size], **options)
            rows += report['results']
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append({'batch_size': batch_size, 'error': 'out of memory'})
    return {'model': name, 'precision': precision, 'params': report['params'] if report else None, 'results': rows}


def bench_command(name: str, device: torch.device, batch_sizes: list[int], precision: str, args) -> str:
    parts = ['cifar-timm', 'bench', name, '--device', str(device), '--batch-sizes', ','.join(map(str, batch_sizes)),
             '--warmup', str(args.warmup), '--repeats', str(args.repeats)]
    parts += ['--channels-last'] * (args.memory_format == 'channels_last') + ['--compile'] * args.compile
    parts += ['--amp'] * PRECISIONS[precision]
    return ' '.join(parts)


def format_cell(row: Optional[dict[str, Any]]) -> str:
    if row is None:
        return ''
    if 'error' in row:
        return row['error']
    slow, fast = row['batch_size'] / (row['max_ms'] / 1000), row['batch_size'] / (row['min_ms'] / 1000)
    return f"{row['images_per_s']:,.0f} [{slow:,.0f}-{fast:,.0f}]"


def markdown_table(report: dict[str, Any]) -> str:
    columns = [(p, b) for p in report['precisions'] for b in report['batch_sizes']]
    lines = ['| model | params (M) | ' + ' | '.join(f'{p} batch {b}' for p, b in columns) + ' |',
             '| --- | ---: | ' + ' | '.join('---:' for _ in columns) + ' |']
    by_model: dict[str, dict[str, Any]] = {}
    for cell in report['cells']:
        by_model.setdefault(cell['model'], {})[cell['precision']] = cell
    for name, cells in by_model.items():
        params = next((c['params'] for c in cells.values() if c['params']), None)
        values = []
        for precision, batch_size in columns:
            rows = cells.get(precision, {}).get('results', [])
            values.append(format_cell(next((r for r in rows if r['batch_size'] == batch_size), None)))
        params_text = f'{params / 1e6:.2f}' if params else ''
        lines.append(f'| {name} | {params_text} | ' + ' | '.join(values) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from cifar_timm.commands.bench import format_machine, machine_info, parse_batch_sizes
    from cifar_timm.commands._options import resolve_device
    from cifar_timm.errors import CifarTimmError
    try:
        if args.warmup < 0 or args.repeats < 1:
            raise CifarTimmError('--warmup must be >= 0 and --repeats >= 1')
        device = resolve_device(args.device)
        gpu = device.type == 'cuda'
        batch_sizes = parse_batch_sizes(args.batch_sizes or ('1,1024' if gpu else '1,256'))
        precisions = parse_precisions(args.precisions or ('fp32,bf16' if gpu else 'fp32'))
        models = select_models(args.models)
    except CifarTimmError as e:
        print(f'bench_inference.py: error: {e}', file=sys.stderr)
        return 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cudnn.benchmark = True  # autotuning happens in the warm-up passes
    machine = machine_info(device)
    timer = 'CUDA events' if gpu else 'perf_counter'
    print(f'machine: {format_machine(machine)}')
    print(f'{len(models)} models, batch sizes {batch_sizes}, {precisions}, {args.memory_format}, compile '
          f'{args.compile}; median images/s [slowest-fastest pass] of {args.repeats} timed passes after '
          f'{args.warmup} warm-up ({timer})')
    report: dict[str, Any] = {
        'benchmark': 'inference', 'machine': machine, 'batch_sizes': batch_sizes, 'precisions': precisions,
        'memory_format': args.memory_format, 'compile': args.compile, 'warmup': args.warmup,
        'repeats': args.repeats, 'timer': timer, 'cells': [], 'commands': {},
    }
    for name in models:
        for precision in precisions:
            cell = measure_cell(name, device, batch_sizes, precision, args)
            report['cells'].append(cell)
            print(f'  {name:<24} {precision}: ' + '  '.join(
                f"b{r['batch_size']} {format_cell(r)}" for r in cell['results']), flush=True)
        for precision in precisions:
            report['commands'][f'{name} {precision}'] = bench_command(name, device, batch_sizes, precision, args)
    table = markdown_table(report)
    example = next(iter(report['commands'].values()))
    print()
    print(table)
    print(f'\none cell again, e.g.: {example}')
    if args.out:
        from bench_train_epoch import write_json_atomic
        from cifar_timm.hub import write_text_atomic
        write_json_atomic(args.out.with_suffix('.json'), report)
        md = args.out.with_suffix('.md')
        write_text_atomic(md, f'Measured on {format_machine(machine)}; median images/s [slowest-fastest pass] of '
                              f'{args.repeats} passes after {args.warmup} warm-up ({timer}), {args.memory_format}.\n\n'
                              f'{table}\n')
        print(f'wrote {args.out.with_suffix(".json")} and {md}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
