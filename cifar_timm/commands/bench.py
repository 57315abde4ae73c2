"""`cifar-timm bench`: inference throughput (images/s) and latency of a model at a few batch sizes.

Each batch size gets `--warmup` untimed forward passes (they absorb torch.compile, cuDNN autotuning and caches;
compile time is therefore not in the numbers), then `--repeats` timed ones; the median is reported. GPU passes are
timed with CUDA events around the forward, CPU passes with perf_counter. Random weights and random input: speed
does not depend on either.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import torch

from ..constants import CIFAR10_INPUT_SIZE
from ..cpuinfo import amd_zen_generation, cpuinfo_fields
from ..errors import CifarTimmError
from ..evaluation import create_eval_model
from ._options import resolve_device

HELP = 'inference throughput and latency at a few batch sizes (median of repeated timed runs)'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='timm model name, e.g. resnet20')
    parser.add_argument('--device', default=None, help='cpu, cuda... (default: cuda when available)')
    parser.add_argument('--batch-sizes', default='1,64,256', help='comma-separated, e.g. 1,64,256')
    parser.add_argument('--channels-last', action='store_true', help='model and input in channels_last')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model (compile time excluded)')
    parser.add_argument('--amp', action='store_true', help='bfloat16 autocast')
    parser.add_argument('--warmup', type=int, default=3, help='untimed passes per batch size')
    parser.add_argument('--repeats', type=int, default=10, help='timed passes per batch size')
    parser.add_argument('--json', action='store_true', help='print one JSON object')


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise CifarTimmError(f'--batch-sizes {text!r} is not a comma-separated list of positive ints, e.g. 1,64,256')
    return sizes


def time_forward(model, x: torch.Tensor, device: torch.device, amp: bool, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` forward passes, after `warmup` untimed ones."""
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(warmup + repeats):
            if device.type == 'cuda':
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1000
            else:
                t0 = time.perf_counter()
                model(x)
                seconds = time.perf_counter() - t0
            if i >= warmup:
                times.append(seconds)
    return times


def measure_inference(name: str, device: torch.device, batch_sizes: list[int], *, channels_last: bool = False,
                      compile: bool = False, amp: bool = False, warmup: int = 3, repeats: int = 10) -> dict:
    """Forward-pass timings of model `name` (random weights) at each batch size: the report `bench --json` prints."""
    model = create_eval_model(name).to(device).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    num_params = sum(p.numel() for p in model.parameters())
    if compile:
        model = torch.compile(model)
    input_size = tuple(model.pretrained_cfg.get('input_size', CIFAR10_INPUT_SIZE))
    rows = []
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, *input_size, device=device).to(memory_format=memory_format)
        times = time_forward(model, x, device, amp, warmup, repeats)
        median = statistics.median(times)
        rows.append({'batch_size': batch_size, 'median_ms': 1000 * median, 'min_ms': 1000 * min(times),
                     'max_ms': 1000 * max(times), 'images_per_s': batch_size / median})
    return {
        'model': name, 'params': num_params, 'device': describe_device(device), 'torch': torch.__version__,
        'input_size': list(input_size), 'channels_last': channels_last, 'compile': compile,
        'amp': 'bfloat16' if amp else None, 'warmup': warmup, 'repeats': repeats,
        'timer': 'cuda events' if device.type == 'cuda' else 'perf_counter', 'results': rows,
    }


def run(args: argparse.Namespace) -> int:
    if args.warmup < 0 or args.repeats < 1:
        raise CifarTimmError('--warmup must be >= 0 and --repeats >= 1')
    device = resolve_device(args.device)
    batch_sizes = parse_batch_sizes(args.batch_sizes)
    report = measure_inference(args.model, device, batch_sizes, channels_last=args.channels_last,
                               compile=args.compile, amp=args.amp, warmup=args.warmup, repeats=args.repeats)
    num_params, input_size, rows = report['params'], tuple(report['input_size']), report['results']
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.model} ({num_params:,} params) on {report['device']}, torch {torch.__version__}, "
              f"input {input_size}, channels_last={args.channels_last}, compile={args.compile}, "
              f"amp={report['amp']}; median of {args.repeats} after {args.warmup} warm-up ({report['timer']})")
        print(f"{'batch':>6} {'median ms':>10} {'min ms':>9} {'images/s':>10}")
        for r in rows:
            print(f"{r['batch_size']:>6} {r['median_ms']:>10.2f} {r['min_ms']:>9.2f} {r['images_per_s']:>10.0f}")
    return 0


def describe_device(device: torch.device) -> str:
    """e.g. 'NVIDIA H100 80GB HBM3' or 'CPU (AMD EPYC, Zen 4, AVX512, bf16, 2 threads)': a CPU's speed depends on its
    generation (a VM's AMD name rarely gives it) and vector instructions (torch's capability: AVX2, AVX512...; native
    bf16, which `auto` precision picks; AMX tiles, which change the fastest grouped conv) as much as on its name."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    from ..layers.grouped_conv import cpu_has_amx
    from ..training.cpu import cpu_has_native_bf16
    matrix = 'AMX' if cpu_has_amx() else 'bf16' if cpu_has_native_bf16() else ''
    parts = [cpu_model_name(), amd_zen_generation(), _cpu_capability(), matrix, f'{torch.get_num_threads()} threads']
    return f'CPU ({", ".join(p for p in parts if p)})'


def cpu_model_name() -> str:
    """The processor's marketing name where the OS tells it (Linux: /proc/cpuinfo), else its architecture."""
    return cpuinfo_fields().get('model name') or platform.processor() or platform.machine()


def _cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # older torch
        return ''


def machine_info(device: torch.device) -> dict:
    """What a benchmark ran on: device name, NVIDIA driver, CUDA and torch versions, CPU count."""
    info = {'device': describe_device(device), 'torch': torch.__version__, 'cuda': torch.version.cuda,
            'driver': None, 'cpu': cpu_model_name(), 'cpu_count': os.cpu_count()}
    if device.type == 'cuda':
        try:  # torch does not expose the driver version; nvidia-smi ships with every driver
            out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                 capture_output=True, text=True, timeout=30, check=True).stdout.split()
            info['driver'] = out[0] if out else None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def format_machine(info: dict) -> str:
    return (f"{info['device']}, driver {info['driver'] or 'n/a'}, CUDA {info['cuda'] or 'n/a'}, "
            f"torch {info['torch']}, {info['cpu_count']} CPUs ({info['cpu']})")
