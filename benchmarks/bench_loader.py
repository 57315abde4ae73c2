"""One epoch of augmented CIFAR-10 training batches: the device-resident `GpuCifarLoader` against the conventional
torchvision-transforms DataLoader (workers = CPU count by default), on the same machine, in one run.

Both paths make the same batches: a random 32x32 crop of the image padded by 4, a random horizontal flip,
normalised float32 NCHW, on `--device` (the DataLoader's batches are copied there, as a training loop would).
Timed: the whole epoch, from `iter()` to the last batch (DataLoader worker start-up included, as a training loop
pays it every epoch without persistent workers). Not timed, reported separately: building the GpuCifarLoader
(the one-off copy and padding of the split on the device). Reading the files is excluded from both.

    python benchmarks/bench_loader.py --data-dir /tmp/cifar10data --no-verify-md5 --batch-size 512
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from cifar_timm.commands.bench import format_machine, machine_info
from cifar_timm.data import GpuCifarLoader, load_cifar10, torchvision_loader


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', required=True, help='folder that holds cifar-10-batches-py/')
    parser.add_argument('--no-verify-md5', dest='verify_md5', action='store_false')
    parser.add_argument('--batch-size', type=int, default=512)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='DataLoader workers')
    parser.add_argument('--pad-mode', default='constant', choices=['constant', 'reflect'])
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads of the main process (default: torch\'s choice); DataLoader '
                             'workers always use one each')
    parser.add_argument('--max-steps', type=int, default=None, help='stop each path early (smoke test only)')
    return parser.parse_args(argv)


def time_epoch(batches, device: torch.device, max_steps) -> tuple[float, int]:
    """Seconds to draw every batch of one epoch onto `device`, and the number of images."""
    synchronize(device)
    start = time.perf_counter()
    images = 0
    for step, (x, y) in enumerate(batches):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        images += len(x)
        if max_steps is not None and step + 1 >= max_steps:
            break
    synchronize(device)
    return time.perf_counter() - start, images


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_cifar10(args.data_dir, 'train', verify_md5=args.verify_md5)

    synchronize(device)
    start = time.perf_counter()
    gpu_loader = GpuCifarLoader(data.images, data.labels, args.batch_size, device=device, pad_mode=args.pad_mode)
    synchronize(device)
    setup_s = time.perf_counter() - start
    gpu_s, gpu_n = time_epoch(gpu_loader, device, args.max_steps)

    tv_loader = torchvision_loader(data.images, data.labels, args.batch_size, num_workers=args.workers,
                                   pad_mode=args.pad_mode, pin_memory=device.type == 'cuda')
    tv_s, tv_n = time_epoch(tv_loader, device, args.max_steps)

    print(f'command: python {" ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))}')
    print(f'machine: {format_machine(machine_info(device))}; batch {args.batch_size}, pad mode {args.pad_mode}, '
          f'{torch.get_num_threads()} torch threads in the main process')
    print(f'GPU-resident loader:  {gpu_n} images in {gpu_s:.2f} s = {gpu_n / gpu_s:,.0f} images/s '
          f'(+ {setup_s:.2f} s one-off setup, not timed)')
    print(f'torchvision DataLoader ({args.workers} workers): {tv_n} images in {tv_s:.2f} s = '
          f'{tv_n / tv_s:,.0f} images/s')
    print(f'ratio (torchvision time / GPU-resident time): {tv_s / gpu_s:.1f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
