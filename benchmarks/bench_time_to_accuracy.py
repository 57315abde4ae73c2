"""Time to accuracy of a full recipe (default: ResNet20, the He seed recipe, 180 epochs) on our data path, against
the seeds' torchvision DataLoader path extrapolated from a few measured epochs, on the same device.

1. The torchvision path: `--torchvision-epochs` (default 3) epochs of the same recipe with `data.loader=torchvision`
   (workers = CPU count). Its epoch time is the median of the epochs after the first (the first pays warm-up).
2. Our path: the whole recipe end to end (`data.loader=gpu`, bf16 on GPU), timed by wall clock around the run
   (data loading, every epoch's validation, checkpoints, the test evaluation and the export included).
3. The torchvision estimate: its first epoch + (epochs - 1) x its median epoch for the training, plus what our run
   spent outside training epochs (validation, checkpoints, test: the same for both paths). This assumes the
   torchvision path reaches the same accuracy per epoch (same recipe and augmentations, other random streams).

GPU-minutes = wall time x processes / 60. Both runs are the real trainer (what `recipes/train.py` runs; the
commands are printed and stored). Outputs in `--output`: bench_tta.json (everything, including the per-epoch
curve), bench_tta.md (the table row) and time_vs_accuracy.png (validation top-1 against training time, both paths).

A long run can be split across commands: `--time-budget-s S` stops the training cleanly after S seconds of this
command (checkpoint saved, exit code 143) and the same command run again continues it; wall times add up.

    python benchmarks/bench_time_to_accuracy.py --data-dir /data/cifar10 --no-verify-md5 \\
        --output runs/bench_tta_resnet20 --time-budget-s 540
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from bench_train_epoch import (DEFAULT_CONFIG, RecipeRun, _repo_relative, default_precision, precision_override,
                               run_recipe, write_json_atomic)
from cifar_timm.hub import write_text_atomic
from cifar_timm.training.run_log import as_float, median_epoch_time, steady_epoch_times

STATE_FILE = 'bench_tta.json'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', required=True, help='folder that holds cifar-10-batches-py/')
    parser.add_argument('--no-verify-md5', dest='verify_md5', action='store_false')
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG, help='recipe (default: ResNet20 He recipe)')
    parser.add_argument('--output', type=Path, required=True,
                        help='folder for both runs and the results; run the same command again to continue')
    parser.add_argument('--torchvision-epochs', type=int, default=3, help='measured epochs of the torchvision path')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='DataLoader workers (torchvision)')
    parser.add_argument('--precision', choices=['bf16', 'no'], default=default_precision(),
                        help='mixed precision of both paths (default: bf16 on GPU, no on CPU)')
    parser.add_argument('--time-budget-s', type=float, default=None,
                        help='stop cleanly after this many seconds; the same command continues')
    parser.add_argument('--max-steps', type=int, default=None,
                        help='steps per epoch (data.limit = steps x batch; smoke runs only)')
    parser.add_argument('extra', nargs='*', metavar='key=value',
                        help='more train.py overrides for both paths, e.g. epochs=2 channels_last=true')
    args = parser.parse_args(argv)
    if args.torchvision_epochs < 1 or (args.max_steps is not None and args.max_steps < 1):
        parser.error('--torchvision-epochs and --max-steps must be positive')
    return args


@contextlib.contextmanager
def sigterm_after(seconds: Optional[float]) -> Iterator[None]:
    """Send this process SIGTERM after `seconds`: the trainer then saves a checkpoint and stops."""
    timer = None
    if seconds is not None:
        timer = threading.Timer(max(seconds, 0.0), os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def common_overrides(args: argparse.Namespace, base: dict[str, Any]) -> list[str]:
    overrides = [f'data.dir={args.data_dir}', f'data.verify_md5={str(args.verify_md5).lower()}',
                 *precision_override(args.precision, base['mixed_precision']),
                 'log.progress=false']  # the per-epoch summary lines stay; a progress bar only clutters logs
    if args.max_steps is not None:
        overrides.append(f'data.limit={args.max_steps * base["batch_size"]}')
    return overrides + list(args.extra)


def measure_torchvision(args, base, state, budget) -> None:
    """Step 1: a few epochs of the torchvision path (redone from scratch if an earlier command was cut off)."""
    output = args.output / 'torchvision'
    shutil.rmtree(output, ignore_errors=True)  # a partial measurement of ours; never a finished one
    overrides = common_overrides(args, base) + [
        'data.loader=torchvision', f'data.num_workers={args.workers}', f'epochs={args.torchvision_epochs}',
        'data.val_limit=0', 'data.test_limit=1017', f'checkpoint.every={args.torchvision_epochs}',
        'log.tensorboard=false', f'output={output}']
    with sigterm_after(budget()):
        run = run_recipe(args.config, overrides)
    times = run.epoch_times()
    steady = steady_epoch_times(times)
    state['torchvision'] = {'command': run.command, 'epoch_times_s': times, 'first_epoch_s': times[0],
                            'median_epoch_s': median_epoch_time(times), 'min_epoch_s': min(steady),
                            'max_epoch_s': max(steady), 'workers': args.workers, 'wall_s': run.wall_s}


def run_ours(args, base, state, budget) -> RecipeRun:
    """Step 2: the full recipe on our path, continuing an earlier cut-off command (resume=auto)."""
    output = args.output / 'gpu_loader'
    overrides = common_overrides(args, base) + ['data.loader=gpu', f'output={output}', 'resume=auto']
    state.setdefault('ours', {'command': None, 'wall_s_per_command': []})
    start = time.perf_counter()
    try:
        with sigterm_after(budget()):
            run = run_recipe(args.config, overrides)
    finally:  # a cut-off command's wall time counts too
        state['ours']['wall_s_per_command'].append(time.perf_counter() - start)
    state['ours']['command'] = run.command
    return run


def summarize(base, state, run: RecipeRun) -> dict[str, Any]:
    results = run.results
    epochs = len(run.rows)
    ours_times = run.epoch_times()
    wall_s = sum(state['ours']['wall_s_per_command'])
    processes = results['config'].get('num_processes', 1)
    train_time_s = results['train_time_s']  # the trainer's sum of epoch times, cut-off epochs included
    outside_epochs_s = wall_s - train_time_s
    tv = state['torchvision']
    tv_train_s = tv['first_epoch_s'] + (epochs - 1) * tv['median_epoch_s']
    tv_wall_s = tv_train_s + outside_epochs_s
    summary = {
        'model': base['model'], 'epochs': epochs, 'processes': processes, 'hardware': results['hardware'],
        'ours': {'wall_s': wall_s, 'gpu_minutes': wall_s * processes / 60, 'train_time_s': train_time_s,
                 'median_epoch_s': median_epoch_time(ours_times),
                 'outside_epochs_s': outside_epochs_s},
        'torchvision_extrapolated': {'wall_s': tv_wall_s, 'gpu_minutes': tv_wall_s * processes / 60,
                                     'train_time_s': tv_train_s, 'median_epoch_s': tv['median_epoch_s'],
                                     'from_epochs': len(tv['epoch_times_s'])},
        'speedup_wall': tv_wall_s / wall_s,
        'top1_val': results['top1_val'], 'top1_test': results['top1_test'],
        'top1_exact': results['top1_exact'], 'top1_exact_ci95': results['top1_exact_ci95'],
        'n_exact': results['n_exact'], 'n_test': results['n_test'],
        'curve': [{'epoch': int(r['epoch']), 'epoch_time_s': float(r['epoch_time_s']),
                   'val_top1': as_float(r['val_top1'])} for r in run.rows],
    }
    return summary


def markdown(summary: dict[str, Any], precision: str) -> str:
    o, t = summary['ours'], summary['torchvision_extrapolated']
    lo, hi = summary['top1_exact_ci95']
    return ('| model | hardware | precision | epochs | ours: wall (min) | ours: GPU-min | torchvision, extrapolated: '
            'wall (min) | speed-up | test top-1 | exact top-1 [95% CI] |\n'
            '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
            f"| {summary['model']} | {summary['hardware']} | {precision} | {summary['epochs']} | "
            f"{o['wall_s'] / 60:.1f} | {o['gpu_minutes']:.1f} | {t['wall_s'] / 60:.1f} "
            f"(from {t['from_epochs']} epochs) | {summary['speedup_wall']:.1f}x | "
            f"{summary['top1_test']:.2f}% (n={summary['n_test']}) | "
            f"{summary['top1_exact']:.2f}% [{lo:.1f}, {hi:.1f}] (n={summary['n_exact']}) |")


def plot(summary: dict[str, Any], tv_first_s: float, path: Path) -> Optional[Path]:
    """Validation top-1 against cumulative training time, ours measured and torchvision extrapolated."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curve = [c for c in summary['curve'] if c['val_top1'] is not None]
    if not curve:
        return None
    ours_x, tv_x, total, tv_total = [], [], 0.0, 0.0
    for c in summary['curve']:
        total += c['epoch_time_s']
        tv_total += tv_first_s if c['epoch'] == 0 else summary['torchvision_extrapolated']['median_epoch_s']
        if c['val_top1'] is not None:
            ours_x.append(total / 60)
            tv_x.append(tv_total / 60)
    acc = [c['val_top1'] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ours_x, acc, label='GPU-resident loader (measured)')
    ax.plot(tv_x, acc, '--', label='torchvision DataLoader (extrapolated)')
    ax.set_xlabel('training time (minutes, validation excluded)')
    ax.set_ylabel('validation top-1 (%)')
    ax.set_title(f"{summary['model']} on {summary['hardware']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f'.{path.stem}.tmp{os.getpid()}.png')
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    from cifar_timm.commands.bench import format_machine, machine_info
    from cifar_timm.errors import CifarTimmError
    from cifar_timm.training import TrainingInterrupted, load_config

    start = time.monotonic()

    def budget() -> Optional[float]:
        return None if args.time_budget_s is None else args.time_budget_s - (time.monotonic() - start)

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    state_path = args.output / STATE_FILE
    try:
        base = load_config(args.config, list(args.extra))
        state = read_state(state_path, args)
        if 'summary' in state:
            print(markdown(state['summary'], state['precision']))
            print(f'already measured: {state_path}; delete {args.output} to measure again')
            return 0
        state['machine'] = machine_info(device)
        print(f'machine: {format_machine(state["machine"])}')
        if 'torchvision' not in state:
            print(f'1/2 torchvision path: {args.torchvision_epochs} epochs, {args.workers} workers')
            measure_torchvision(args, base, state, budget)
            write_json_atomic(state_path, state)
        print('2/2 our path: the full recipe')
        run = run_ours(args, base, state, budget)
    except TrainingInterrupted as e:
        write_json_atomic(state_path, state)
        print(f'bench_time_to_accuracy.py: time budget used up ({e}); run the same command again to continue',
              file=sys.stderr)
        return e.exit_code
    except CifarTimmError as e:
        print(f'bench_time_to_accuracy.py: error: {e}', file=sys.stderr)
        return 1
    if run.results is None:  # cannot happen with a finished run; guards a debug.max_steps override
        print('bench_time_to_accuracy.py: error: the run stopped before its last epoch', file=sys.stderr)
        return 1
    summary = summarize(base, state, run)
    state['summary'] = summary
    row = markdown(summary, args.precision)
    write_json_atomic(state_path, state)
    write_text_atomic(args.output / 'bench_tta.md', row + '\n')
    figure = plot(summary, state['torchvision']['first_epoch_s'], args.output / 'time_vs_accuracy.png')
    o, t = summary['ours'], summary['torchvision_extrapolated']
    print(f"ours: {o['wall_s']:.1f} s wall ({o['gpu_minutes']:.2f} GPU-min), median epoch {o['median_epoch_s']:.2f} s; "
          f"torchvision extrapolated: {t['wall_s']:.1f} s wall, median epoch {t['median_epoch_s']:.2f} s "
          f"(from {t['from_epochs']} epochs); speed-up {summary['speedup_wall']:.2f}x")
    print(row)
    print(f'commands:\n  {state["torchvision"]["command"]}\n  {state["ours"]["command"]}')
    print(f'wrote {state_path}, {args.output / "bench_tta.md"}' + (f', {figure}' if figure else ''))
    return 0


def read_state(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """What an earlier command on the same output measured (or a fresh state)."""
    import json
    if not path.exists():
        return {'benchmark': 'time_to_accuracy', 'config': _repo_relative(args.config), 'precision': args.precision}
    return json.loads(path.read_text())


if __name__ == '__main__':
    sys.exit(main())
