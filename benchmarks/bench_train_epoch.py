"""Training epochs of a recipe (default: ResNet20, the He seed recipe, batch 128, bf16 on GPU) through both data
paths of the trainer, one after the other in the same process on the same device:

- **GPU-resident**: `data.loader=gpu` (`GpuCifarLoader`, the split kept on the device, augmented there);
- **torchvision**: `data.loader=torchvision` (the seeds' pipeline: a DataLoader whose workers, one per CPU by
  default, run RandomCrop/RandomHorizontalFlip/ToTensor/Normalize on PIL images).

Both are the real trainer (`cifar_timm.training.train`, exactly what `recipes/train.py` runs) with the overrides
printed next to each row, so a row is reproduced by that one train.py command. The times are the trainer's own
`epoch_time_s` from the run's metrics.csv: wall clock of the training steps of one epoch, closed by a device sync
(the loop's end-of-epoch check reads a device tensor). Wall clock rather than CUDA events on purpose: what differs
between the paths is the host (DataLoader workers, copies), which events on the device stream would not see.
Validation is switched off (`data.val_limit=0`; it is not part of an epoch time either way) and the test set is cut
to the exact images 0-1016 (`data.test_limit=1017`), so the run's end costs little.

The first epoch pays the warm-up (cuDNN autotuning, torch.compile, first DataLoader start); the median and spread
are over the later epochs, so use `--epochs 3` or more for a table row (default 3).

    python benchmarks/bench_train_epoch.py --data-dir /data/cifar10 --no-verify-md5
    python benchmarks/bench_train_epoch.py --data-dir /data/cifar10 --no-verify-md5 --channels-last --compile

CUDA graphs are not offered: the trainer compiles with the default `torch.compile` mode, and capturing a whole
Accelerate training step (optimizer and LR-scheduler updates on the host, the NaN check) needs changes in the loop
itself, not a benchmark switch.
`--max-steps N` cuts each epoch to N steps (smoke runs only: `data.limit` = N x batch).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from cifar_timm.hub import write_text_atomic
from cifar_timm.training.run_log import median_epoch_time, steady_epoch_times

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / 'recipes' / 'configs' / 'resnet20.yaml'
PATHS = {'gpu': 'GPU-resident loader', 'torchvision': 'torchvision DataLoader'}


@dataclass
class RecipeRun:
    """One in-process training run: its metrics.csv rows, results.json (None when it stopped early), wall time."""
    command: str
    output: Path
    wall_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    results: Optional[dict[str, Any]] = None

    def epoch_times(self) -> list[float]:
        return [float(r['epoch_time_s']) for r in self.rows]


def train_command(config: Path, overrides: list[str]) -> str:
    """The recipes/train.py command line that runs the same training as `run_recipe(config, overrides)`."""
    return shlex.join(['python', 'recipes/train.py', '--config', _repo_relative(config)] + overrides)


def run_recipe(config: Path, overrides: list[str]) -> RecipeRun:
    """Train in this process exactly as `recipes/train.py --config CONFIG OVERRIDES...` would; a
    TrainingInterrupted (SIGTERM: the trainer saved a checkpoint) propagates."""
    import cifar_timm  # noqa: F401  (registers the models)
    from cifar_timm.training import load_config, train
    from cifar_timm.training.run_log import read_metrics

    resolved = load_config(config, overrides)
    output = Path(resolved['output'])
    synchronize()
    start = time.perf_counter()
    results = train(resolved)
    synchronize()
    wall_s = time.perf_counter() - start
    rows = read_metrics(output / 'metrics.csv')
    return RecipeRun(train_command(config, overrides), output, wall_s, rows, results)


def run_recipe_in_subprocess(config: Path, overrides: list[str]) -> RecipeRun:
    """As run_recipe, but `recipes/train.py` in a process of its own: what the trainer sets process-wide (the
    allocator, threads) stays out of the run, and the run's settings out of this process."""
    from cifar_timm.training import load_config
    from cifar_timm.training.run_log import read_metrics

    output = Path(load_config(config, overrides)['output'])
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO_ROOT / 'recipes' / 'train.py'), '--config', str(config),
                           *overrides], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall_s = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f'{train_command(config, overrides)} failed (exit {done.returncode}):\n'
                           f'{done.stdout[-3000:]}')
    results_path = output / 'export' / 'results.json'
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    return RecipeRun(train_command(config, overrides), output, wall_s, read_metrics(output / 'metrics.csv'),
                     results)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def summarize(times: list[float]) -> dict[str, Any]:
    """Median and spread of the epochs after the first (the first pays warm-up); all of them if there is one."""
    steady = steady_epoch_times(times)
    return {'epoch_times_s': times, 'first_epoch_s': times[0] if times else None,
            'median_s': median_epoch_time(times),
            'min_s': min(steady) if steady else None, 'max_s': max(steady) if steady else None,
            'n_steady': len(steady) if len(times) > 1 else 0}


def _repo_relative(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + '\n')


def default_precision() -> str:
    return 'bf16' if torch.cuda.is_available() else 'no'


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --no-verify-md5, as every training benchmark takes them."""
    parser.add_argument('--data-dir', required=True, help='folder that holds cifar-10-batches-py/')
    parser.add_argument('--no-verify-md5', dest='verify_md5', action='store_false',
                        help='needed for the JPEG-rebuilt copy of the project machines')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG, help='recipe (default: ResNet20 He recipe)')
    parser.add_argument('--epochs', type=int, default=3, help='epochs per path; the first is warm-up (default 3)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='DataLoader workers of the torchvision path (default: CPU count)')
    parser.add_argument('--precision', choices=['bf16', 'no'], default=default_precision(),
                        help='mixed precision (default: bf16 on GPU, no on CPU)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model (compile time is in epoch 1)')
    parser.add_argument('--paths', default='gpu,torchvision', help='data paths to run, comma-separated')
    parser.add_argument('--max-steps', type=int, default=None, help='steps per epoch (smoke runs only)')
    parser.add_argument('--json', type=Path, default=None, help='also write the results to this JSON file')
    parser.add_argument('--keep-runs', type=Path, default=None,
                        help='keep the run folders here (default: a temporary folder, deleted)')
    parser.add_argument('extra', nargs='*', metavar='key=value', help='more train.py overrides for both paths')
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(',') if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown or not args.paths:
        parser.error(f'--paths {",".join(unknown) or "(empty)"}: use gpu, torchvision or both')
    if args.epochs < 1 or (args.max_steps is not None and args.max_steps < 1):
        parser.error('--epochs and --max-steps must be positive')
    return args


def path_overrides(args: argparse.Namespace, loader: str, base: dict[str, Any], output: Path) -> list[str]:
    overrides = [
        f'data.dir={args.data_dir}', f'data.verify_md5={str(args.verify_md5).lower()}', f'data.loader={loader}',
        f'epochs={args.epochs}', *precision_override(args.precision, base['mixed_precision']),
        f'channels_last={str(args.channels_last).lower()}', f'compile={str(args.compile).lower()}',
        'data.val_limit=0', 'data.test_limit=1017', f'checkpoint.every={args.epochs}',
        'log.progress=false', 'log.tensorboard=false', f'output={output}',
    ]
    if loader == 'torchvision':
        overrides.append(f'data.num_workers={args.workers}')
    if args.max_steps is not None:
        overrides.append(f'data.limit={args.max_steps * base["batch_size"]}')
    return overrides + list(args.extra)


def precision_override(precision: str, recipe_value: str) -> list[str]:
    return [] if precision == recipe_value else [f'mixed_precision={precision}']


def main(argv=None) -> int:
    args = parse_args(argv)
    from cifar_timm.commands.bench import format_machine, machine_info
    from cifar_timm.errors import CifarTimmError
    from cifar_timm.training import load_config

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    machine = machine_info(device)
    try:
        base = load_config(args.config, list(args.extra))
    except CifarTimmError as e:
        print(f'bench_train_epoch.py: error: {e}', file=sys.stderr)
        return 1
    print(f'machine: {format_machine(machine)}')
    print(f'recipe: {_repo_relative(args.config)} ({base["model"]}), batch {base["batch_size"]}, '
          f'precision {args.precision}, channels_last {args.channels_last}, compile {args.compile}, '
          f'{args.epochs} epoch(s) per path' + (f', {args.max_steps} steps per epoch (smoke run)' if args.max_steps
                                                 else ''))
    report: dict[str, Any] = {'benchmark': 'train_epoch', 'machine': machine, 'config': _repo_relative(args.config),
                              'model': base['model'], 'batch_size': base['batch_size'], 'precision': args.precision,
                              'channels_last': args.channels_last, 'compile': args.compile, 'epochs': args.epochs,
                              'max_steps': args.max_steps, 'workers': args.workers, 'paths': {}}
    with tempfile.TemporaryDirectory(prefix='bench_train_epoch_') as tmp:
        root = args.keep_runs or Path(tmp)
        for loader in args.paths:
            output = Path(root) / f'{loader}-{time.strftime("%Y%m%d-%H%M%S")}'
            overrides = path_overrides(args, loader, base, output)
            try:
                run = run_recipe(args.config, overrides)
            except CifarTimmError as e:
                print(f'bench_train_epoch.py: error ({loader} path): {e}', file=sys.stderr)
                return 1
            stats = summarize(run.epoch_times())
            images = [float(r['images_per_s']) for r in run.rows]
            stats.update(command=run.command, images_per_s=images,
                         median_images_per_s=statistics.median(images[1:] or images) if images else None)
            report['paths'][loader] = stats
            print(f'  {run.command}')
    print_table(report)
    if args.json:
        write_json_atomic(args.json, report)
        print(f'wrote {args.json}')
    return 0


def print_table(report: dict[str, Any]) -> None:
    paths = report['paths']
    print(f"{'path':<34} {'epoch 1 s':>10} {'median s':>9} {'min-max s':>14} {'images/s':>9}")
    for loader, s in paths.items():
        name = PATHS[loader] + (f' ({report["workers"]} workers)' if loader == 'torchvision' else '')
        spread = f"{s['min_s']:.2f}-{s['max_s']:.2f}" if s['n_steady'] else 'n/a'
        print(f"{name:<34} {s['first_epoch_s']:>10.2f} {s['median_s']:>9.2f} {spread:>14} "
              f"{s['median_images_per_s']:>9.0f}")
    if len(paths) == 2:
        ratio = paths['torchvision']['median_s'] / paths['gpu']['median_s']
        report['ratio_torchvision_over_gpu'] = ratio
        steady = 'median of epochs 2+' if paths['gpu']['n_steady'] else 'single epoch, warm-up included'
        print(f'ratio (torchvision epoch time / GPU-resident epoch time, {steady}): {ratio:.2f}x')
        settings = ', '.join([report['precision'] if report['precision'] != 'no' else 'fp32'] +
                             ['channels_last'] * report['channels_last'] + ['compile'] * report['compile'])
        print('markdown row: | settings | GPU-resident epoch (s) | torchvision epoch (s) | ratio |')
        print(f"| {settings} | {paths['gpu']['median_s']:.2f} | {paths['torchvision']['median_s']:.2f} | "
              f"{ratio:.2f}x |")


if __name__ == '__main__':
    sys.exit(main())
