"""Training speed on the CPU through the real trainer (GpuCifarLoader with its augmentation, the Accelerate step,
optimizer, schedule, EMA where the recipe has it), for every registered model, in four parts of one run:

1. **every model**, bf16 autocast + channels_last against fp32 NCHW: img/s of the second of two short epochs
   (the first pays warm-up: oneDNN primitives, the compiled layers), batch 128 for all, each model's own recipe;
2. **ratios** the CPU-speed work is judged by (mxresnet20 / xresnet20, se_mxresnext29_16x2d / xresnet29), the
   four models interleaved over `--repeats` rounds, the ratio of the medians, in the trainer's CPU defaults
   (`auto`: bf16 + channels_last where the CPU computes bf16 natively, fp32 + channels_last elsewhere, where
   emulated bf16 is some 30x slower and no run would use it);
3. **a whole resnet20 epoch** (45,000 images, the He recipe) with the trainer's CPU defaults against a seed-style
   pipeline: the same trainer with `data.loader=torchvision` (a DataLoader with 2 workers running RandomCrop,
   flip, ToTensor, Normalize on PIL images), fp32, NCHW, all cores' threads and glibc's own allocator thresholds
   (`cpu_allocator=system`), as the seed repositories train. Each of the two epochs runs in a process of its own:
   the trainer's allocator setting is process-wide and cannot be undone;
4. **the ceiling** of that ratio on this machine: resnet20's synthetic training step (the CPU defaults, batch 128,
   Nesterov SGD) under `torch.profiler`, its convolutions' share of the step and their FLOP rate against one
   2048x2048 matmul in the same precision. A step can be no faster than its convolutions alone, so
   batch / (convolution time a step) bounds the trainer's img/s whatever the rest of the pipeline does.

Every row is a `recipes/train.py` command, printed beside it.

    python benchmarks/bench_cpu_train.py --data-dir DATA --no-verify-md5 --json runs/bench_cpu_train.json
    python benchmarks/bench_cpu_train.py --data-dir DATA --no-verify-md5 --models 'resnet2*' --parts models
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_epoch import (REPO_ROOT, RecipeRun, add_data_arguments, run_recipe,  # noqa: E402
                               run_recipe_in_subprocess, write_json_atomic)

SETTINGS = {
    'bf16+CL': ['mixed_precision=bf16', 'channels_last=true'],
    'fp32 NCHW': ['mixed_precision=no', 'channels_last=false'],
    'CPU defaults': ['mixed_precision=auto', 'channels_last=auto'],
}
RATIO_PAIRS = (('mxresnet20', 'xresnet20', 0.8), ('se_mxresnext29_16x2d', 'xresnet29', 0.6))
EPOCH_TARGET = 3.0
BATCH = 128


def recipe_for(model: str) -> tuple[Path, list[str]]:
    """The model's own recipe, or the He recipe with `model=` for a model without one."""
    own = REPO_ROOT / 'recipes' / 'configs' / f'{model}.yaml'
    if own.is_file():
        return own, []
    return REPO_ROOT / 'recipes' / 'configs' / 'resnet20.yaml', [f'model={model}']


def common_overrides(args: argparse.Namespace, output: Path) -> list[str]:
    return [f'data.dir={args.data_dir}', f'data.verify_md5={str(args.verify_md5).lower()}', 'data.val_limit=0',
            'data.test_limit=64', 'log.progress=false', 'log.tensorboard=false', f'output={output}']


def short_epochs(args, model: str, setting: str, output: Path) -> tuple[float, RecipeRun]:
    """img/s of epoch 2 of 2, each `args.steps` steps of batch 128."""
    config, model_args = recipe_for(model)
    overrides = model_args + SETTINGS[setting] + common_overrides(args, output) + [
        'epochs=2', f'batch_size={BATCH}', 'grad_accum_steps=1', f'data.limit={args.steps * BATCH}',
        'checkpoint.every=2', 'scheduler.warmup_epochs=0']
    run = run_recipe(config, overrides)
    return float(run.rows[-1]['images_per_s']), run


def part_models(args, models: list[str], root: Path) -> list[dict[str, Any]]:
    rows = []
    print(f"{'model':<24} {'bf16+CL img/s':>14} {'fp32 NCHW img/s':>16} {'speed-up':>9}")
    for model in models:
        row: dict[str, Any] = {'model': model}
        for setting in SETTINGS:
            speed, run = short_epochs(args, model, setting, root / f'{model}-{setting.replace(" ", "_")}')
            row[setting] = speed
            row[f'{setting} command'] = run.command
        row['speed_up'] = row['bf16+CL'] / row['fp32 NCHW']
        rows.append(row)
        print(f"{model:<24} {row['bf16+CL']:>14.0f} {row['fp32 NCHW']:>16.0f} {row['speed_up']:>8.2f}x", flush=True)
    return rows


def part_ratios(args, root: Path) -> list[dict[str, Any]]:
    models = [m for pair in RATIO_PAIRS for m in pair[:2]]
    speeds: dict[str, list[float]] = {m: [] for m in models}
    for r in range(args.repeats):
        for model in models:
            speeds[model].append(short_epochs(args, model, 'CPU defaults', root / f'ratio-{model}-{r}')[0])
    from cifar_timm.training.cpu import resolve_mixed_precision
    precision = 'bf16' if resolve_mixed_precision('auto', torch.device('cpu')) == 'bf16' else 'fp32'
    print(f'ratios in the CPU defaults: {precision}, channels_last')
    out = []
    for model, ref, target in RATIO_PAIRS:
        a, b = statistics.median(speeds[model]), statistics.median(speeds[ref])
        out.append({'model': model, 'reference': ref, 'target': target, 'ratio': a / b, 'precision': precision,
                    'model_img_s': speeds[model], 'reference_img_s': speeds[ref]})
        print(f'{model} / {ref}: {a:.0f} / {b:.0f} img/s = {a / b:.2f}x (target >= {target}x; rounds: '
              f'{", ".join(f"{v:.0f}" for v in speeds[model])} vs {", ".join(f"{v:.0f}" for v in speeds[ref])})')
    return out


def part_epoch(args, root: Path) -> dict[str, Any]:
    config = REPO_ROOT / 'recipes' / 'configs' / 'resnet20.yaml'
    paths = {
        'trainer (CPU defaults)': [],
        'seed-style (torchvision DataLoader, 2 workers, fp32, NCHW)': [
            'data.loader=torchvision', 'data.num_workers=2', 'mixed_precision=no', 'channels_last=false',
            f'cpu_threads={os.cpu_count() or 1}', 'cpu_allocator=system'],
    }
    out: dict[str, Any] = {}
    for name, extra in paths.items():
        overrides = common_overrides(args, root / f'epoch-{len(out)}') + ['epochs=1'] + extra
        if args.epoch_images:
            overrides.append(f'data.limit={args.epoch_images}')
        run = run_recipe_in_subprocess(config, overrides)
        row = run.rows[-1]
        out[name] = {'images_per_s': float(row['images_per_s']), 'epoch_time_s': float(row['epoch_time_s']),
                     'command': run.command}
        print(f'{name}: {float(row["images_per_s"]):.0f} img/s, {float(row["epoch_time_s"]):.1f} s\n  {run.command}',
              flush=True)
    a, b = (v['images_per_s'] for v in out.values())
    out['ratio'] = a / b
    print(f'resnet20 epoch, trainer / seed-style: {a / b:.2f}x (target >= {EPOCH_TARGET}x)')
    return out


def _best_seconds(fn, repeats: int) -> float:
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def training_conv_flops(step) -> int:
    """FLOPs of the convolutions in one call of `step` (a training step), as torch's FlopCounterMode counts them:
    forward, weight gradient, and input gradient wherever the input needs one (not the stem's)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return sum(flops for op, flops in counter.get_flop_counts()['Global'].items() if 'convolution' in str(op))


def part_ceiling(args, epoch: dict[str, Any] | None) -> dict[str, Any]:
    import timm
    from torch.profiler import ProfilerActivity, profile

    from cifar_timm.training.cpu import resolve_mixed_precision
    bf16 = resolve_mixed_precision('auto', torch.device('cpu')) == 'bf16'
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    matmul = 2 * 2048 ** 3 / _best_seconds(lambda: a @ b, 5) / 1e9

    model = timm.create_model('resnet20').to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(BATCH, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    steps = max(3, args.steps)
    flops = training_conv_flops(step)  # one of the warm-up steps, in which oneDNN builds its primitives
    for _ in range(2):
        step()
    step_s = _best_seconds(lambda: [step() for _ in range(steps)], 2) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if 'convolution' in e.key)
    conv_s = step_s * conv / total  # the profiler's share, applied to the unprofiled step
    out = {'precision': 'bf16' if bf16 else 'fp32', 'matmul_gflops': matmul, 'step_img_s': BATCH / step_s,
           'conv_share': conv / total, 'conv_gflops': flops / conv_s / 1e9, 'ceiling_img_s': BATCH / conv_s}
    print(f"resnet20 step ({out['precision']}, channels_last, batch {BATCH}): {out['step_img_s']:.0f} img/s; "
          f"convolutions {100 * out['conv_share']:.0f}% of it at {out['conv_gflops']:.0f} GFLOP/s, against "
          f"{matmul:.0f} GFLOP/s for a 2048x2048 matmul ({100 * out['conv_gflops'] / matmul:.0f}%)\n"
          f"  with everything but the convolutions free, the step would run {out['ceiling_img_s']:.0f} img/s")
    if epoch:
        seed = next(v['images_per_s'] for k, v in epoch.items() if k.startswith('seed-style'))
        out['ceiling_ratio'] = out['ceiling_img_s'] / seed
        print(f"  so the epoch ratio cannot pass {out['ceiling_ratio']:.2f}x on this machine "
              f"(target >= {EPOCH_TARGET}x)")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument('--models', default='*', help='names or patterns for part 1, comma-separated (default all)')
    parser.add_argument('--parts', default='models,ratios,epoch,ceiling', help='which parts to run, comma-separated')
    parser.add_argument('--steps', type=int, default=4, help='steps of batch 128 per short epoch (default 4)')
    parser.add_argument('--repeats', type=int, default=3, help='rounds of the ratio part (default 3)')
    parser.add_argument('--epoch-images', type=int, default=None,
                        help='cut the resnet20 epochs to this many images (smoke runs; default the whole 45,000)')
    parser.add_argument('--json', type=Path, default=None, help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(',') if p.strip()]
    if not set(args.parts) <= {'models', 'ratios', 'epoch', 'ceiling'} or not args.parts:
        parser.error('--parts: any of models, ratios, epoch, ceiling')
    if args.steps < 1 or args.repeats < 1:
        parser.error('--steps and --repeats must be positive')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import cifar_timm
    from cifar_timm.commands.bench import format_machine, machine_info
    from cifar_timm.errors import CifarTimmError

    if torch.cuda.is_available():
        print('bench_cpu_train.py: note: a GPU is present; this benchmark trains on it only if the trainer does',
              file=sys.stderr)
    patterns = [p.strip() for p in args.models.split(',') if p.strip()]
    models = [m for m in cifar_timm.list_models() if any(fnmatch.fnmatch(m, p) for p in patterns)]
    if 'models' in args.parts and not models:
        print(f'bench_cpu_train.py: error: --models {args.models} matches no model; see `cifar-timm list`',
              file=sys.stderr)
        return 2
    machine = machine_info(torch.device('cpu'))
    print(f'machine: {format_machine(machine)}; torch threads {torch.get_num_threads()}')
    report: dict[str, Any] = {'benchmark': 'cpu_train', 'machine': machine, 'batch_size': BATCH,
                              'steps': args.steps}
    try:
        with tempfile.TemporaryDirectory(prefix='bench_cpu_train_') as tmp:
            root = Path(tmp)
            if 'models' in args.parts:
                report['models'] = part_models(args, models, root)
            if 'ratios' in args.parts:
                report['ratios'] = part_ratios(args, root)
            if 'epoch' in args.parts:
                report['epoch'] = part_epoch(args, root)
            if 'ceiling' in args.parts:
                report['ceiling'] = part_ceiling(args, report.get('epoch'))
    except CifarTimmError as e:
        print(f'bench_cpu_train.py: error: {e}', file=sys.stderr)
        return 1
    if args.json:
        write_json_atomic(args.json, report)
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
