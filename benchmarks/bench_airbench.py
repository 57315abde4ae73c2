"""PyPI `airbench` (Keller Jordan's fast CIFAR-10 trainings) on our CIFAR-10 copy: its own reported time for the
airbench94 recipe and its accuracy on all 10,000 test images and on the exact ones (0-1016, EXACT_TEST_SLICE).

airbench 0.1.8 has no data-path argument for its test set: `CifarLoader(path)` reads `path/train.pt` and
`path/test.pt` (dicts of uint8 NHWC `images`, int64 `labels`, `classes`) and otherwise calls
`torchvision.datasets.CIFAR10(path, download=True)`, which would try the network (our copy fails the official md5
sums); and `train94()` builds its test loader from the relative path `cifar10`. So this script writes
`WORK_DIR/cifar10/{train,test}.pt` from our copy (`--prepare-only` stops there, no GPU or airbench needed) and runs
airbench with WORK_DIR as the working directory. Everything else is airbench's default: `warmup94()` once (its
README: the first run is slower), then `--runs` calls of `train94()`.

Times: airbench's own `total_time_seconds` (CUDA events around whitening init, training and the final TTA
evaluation; data loading and per-epoch evaluations excluded), parsed from its printed table, and our wall clock
of the whole call. Accuracy: airbench's `infer(model, test_loader, tta_level=2)` (its TTA, as its 94% claim),
top-1 on all 10,000 test images and on the exact ones with the Wilson 95% interval. airbench needs a CUDA GPU
(`make_net94` calls `.cuda()`) and torchvision. It is not a dependency of cifar-timm; on the device machine install
the wheel built with `pip wheel airbench==0.1.8 --no-deps -w wheels/` (pure Python; do not commit it).

    python benchmarks/bench_airbench.py --data-dir /data/cifar10 --no-verify-md5 --runs 5 --out runs/airbench94
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

VARIANTS = ('94', '95', '96')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', required=True, help='folder that holds cifar-10-batches-py/')
    parser.add_argument('--no-verify-md5', dest='verify_md5', action='store_false')
    parser.add_argument('--work-dir', type=Path, default=Path('runs/airbench'),
                        help='airbench working directory: cifar10/{train,test}.pt are written here')
    parser.add_argument('--variant', choices=VARIANTS, default='94', help='airbench recipe (default 94)')
    parser.add_argument('--runs', type=int, default=5, help='timed trainings after one warm-up')
    parser.add_argument('--prepare-only', action='store_true', help='write the data files and stop')
    parser.add_argument('--out', type=Path, default=None, help='write OUT.json and OUT.md')
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error('--runs must be >= 1')
    return args


def prepare_data(data_dir: Path, verify_md5: bool, work_dir: Path) -> Path:
    """Write our copy in airbench's cached format: WORK_DIR/cifar10/{train,test}.pt (atomic, rewritten each time)."""
    from cifar_timm.constants import CIFAR10_CLASSES
    from cifar_timm.data import load_cifar10
    from cifar_timm.hub import write_bytes_atomic
    folder = Path(work_dir) / 'cifar10'
    folder.mkdir(parents=True, exist_ok=True)
    for split in ('train', 'test'):
        data = load_cifar10(data_dir, split, verify_md5=verify_md5)
        payload = {'images': data.images.permute(0, 2, 3, 1).contiguous(),  # NHWC, as torchvision's .data
                   'labels': data.labels.clone(), 'classes': list(CIFAR10_CLASSES)}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        write_bytes_atomic(folder / f'{split}.pt', buffer.getvalue())
    return folder


def import_airbench():
    from cifar_timm.errors import CifarTimmError
    try:
        import airbench
    except ImportError as e:
        raise CifarTimmError(f'airbench is not installed ({e}): `pip install --no-deps airbench-0.1.8-py3-none-any'
                             f'.whl` (build it with `pip wheel airbench==0.1.8 --no-deps -w wheels/`)') from None
    if not torch.cuda.is_available():
        raise CifarTimmError('airbench needs a CUDA GPU (its networks are built with .cuda() and timed with CUDA '
                             'events); run this on the GPU machine, or use --prepare-only here')
    return airbench


def parse_airbench_table(text: str) -> dict[str, Optional[float]]:
    """airbench's final printed row (`| run | epoch='eval' | ... | tta_val_acc | total_time_seconds |`)."""
    for line in reversed(text.splitlines()):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 7 and cells[1] == 'eval':
            return {'tta_val_acc': float(cells[5]), 'total_time_seconds': float(cells[6])}
    return {'tta_val_acc': None, 'total_time_seconds': None}


def exact_accuracy(airbench, model, tta_level: int) -> dict[str, Any]:
    from cifar_timm.constants import EXACT_TEST_SLICE
    from cifar_timm.evaluation import wilson_interval
    loader = airbench.CifarLoader('cifar10', train=False, batch_size=2000)
    correct = (airbench.infer(model, loader, tta_level).argmax(1) == loader.labels).cpu()
    exact = correct[EXACT_TEST_SLICE]
    return {'top1_test': 100 * correct.double().mean().item(), 'n_test': len(correct),
            'top1_exact': 100 * exact.double().mean().item(), 'n_exact': len(exact),
            'top1_exact_ci95': list(wilson_interval(int(exact.sum()), len(exact)))}


def run_airbench(airbench, variant: str, runs: int) -> list[dict[str, Any]]:
    train, warmup = getattr(airbench, f'train{variant}'), getattr(airbench, f'warmup{variant}')
    tta_level = 2  # airbench's hyp['net']['tta_level'] in every variant
    with contextlib.redirect_stdout(io.StringIO()):  # its one-step warm-up prints a partial table
        warmup()
    rows = []
    for run in range(runs):
        out = io.StringIO()
        torch.cuda.synchronize()
        start = time.perf_counter()
        with contextlib.redirect_stdout(out):
            model = train(run=run)
        torch.cuda.synchronize()
        wall_s = time.perf_counter() - start
        row = {'run': run, 'wall_s': wall_s, **parse_airbench_table(out.getvalue()),
               **exact_accuracy(airbench, model, tta_level)}
        rows.append(row)
        print(f"  run {run}: airbench time {row['total_time_seconds']} s (wall {wall_s:.2f} s), "
              f"test top-1 {row['top1_test']:.2f}%, exact {row['top1_exact']:.2f}% "
              f"[{row['top1_exact_ci95'][0]:.1f}, {row['top1_exact_ci95'][1]:.1f}]", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from cifar_timm.evaluation import wilson_interval
    times = [r['total_time_seconds'] for r in rows if r['total_time_seconds'] is not None]
    n_exact = rows[0]['n_exact']
    mean_exact = statistics.mean(r['top1_exact'] for r in rows)
    return {
        'runs': len(rows),
        'median_time_s': statistics.median(times) if times else None,
        'min_time_s': min(times) if times else None, 'max_time_s': max(times) if times else None,
        'median_wall_s': statistics.median(r['wall_s'] for r in rows),
        'mean_top1_test': statistics.mean(r['top1_test'] for r in rows),
        'mean_top1_exact': mean_exact, 'n_exact': n_exact,
        # Wilson interval of the mean at n=1017: every run sees the same images, so the sample of images (not the
        # number of runs) bounds what the exact slice can tell
        'exact_ci95': list(wilson_interval(round(mean_exact * n_exact / 100), n_exact)),
    }


def markdown(summary: dict[str, Any], variant: str, device: str) -> str:
    lo, hi = summary['exact_ci95']
    time_cell = 'n/a (airbench printed no time)' if summary['median_time_s'] is None else \
        f"{summary['median_time_s']:.2f} [{summary['min_time_s']:.2f}-{summary['max_time_s']:.2f}]"
    return ('| recipe | GPU | runs | time, median [min-max] (s) | test top-1, mean | exact top-1, mean '
            f"[95% CI, n={summary['n_exact']}] |\n| --- | --- | ---: | ---: | ---: | ---: |\n"
            f"| airbench{variant} (PyPI airbench 0.1.8) | {device} | {summary['runs']} | "
            f"{time_cell} | "
            f"{summary['mean_top1_test']:.2f}% | {summary['mean_top1_exact']:.2f}% [{lo:.1f}, {hi:.1f}] |")


def main(argv=None) -> int:
    args = parse_args(argv)
    from cifar_timm.commands.bench import format_machine, machine_info
    from cifar_timm.errors import CifarTimmError
    work_dir = args.work_dir.resolve()
    try:
        folder = prepare_data(args.data_dir, args.verify_md5, work_dir)
        print(f'airbench data written: {folder}/train.pt, test.pt')
        if args.prepare_only:
            return 0
        airbench = import_airbench()
    except CifarTimmError as e:
        print(f'bench_airbench.py: error: {e}', file=sys.stderr)
        return 1
    device = torch.device('cuda')
    machine = machine_info(device)
    print(f'machine: {format_machine(machine)}')
    print(f'airbench {getattr(airbench, "__version__", "0.1.8")}: warm-up, then {args.runs} x train{args.variant}()')
    previous = os.getcwd()
    os.chdir(work_dir)  # train94() reads its test set from the relative path `cifar10`
    try:
        rows = run_airbench(airbench, args.variant, args.runs)
    finally:
        os.chdir(previous)
    summary = summarize(rows)
    row = markdown(summary, args.variant, machine['device'])
    print(row)
    if args.out:
        from bench_train_epoch import write_json_atomic
        from cifar_timm.hub import write_text_atomic
        write_json_atomic(args.out.with_suffix('.json'), {'benchmark': 'airbench', 'variant': args.variant,
                                                          'machine': machine, 'runs': rows, 'summary': summary})
        write_text_atomic(args.out.with_suffix('.md'), row + '\n')
        print(f'wrote {args.out.with_suffix(".json")} and {args.out.with_suffix(".md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
