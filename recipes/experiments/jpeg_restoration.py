"""Does undoing the JPEG artefacts of the training images win back what they cost on clean images?

The shared copy (../shared/cifar10) keeps the JPEG stream of every training image, the 8,068 exact ones included, so
it holds real pairs: the same image as the public JPEG copy decodes it and with its exact pixels. A small residual CNN
learns the step from one to the other (mean squared error), and would then restore the 37,755 JPEG-decoded images a
run trains on. Whether that helps is measured as jpeg_training_cost.py measures the JPEG cost, on the 7,245 exact
training images outside the validation split:

- `shared_jpeg/train`: those images as the shared copy's own JPEG stream decodes them (what the other images are);
- `restored/train`:    the same decodes after a restorer that never saw them: the images are split in two random
                       halves, and each half is restored by a restorer trained on the other half's pairs;
- `val_exact/`:        the validation split's exact images, the images both are scored on.

    python recipes/experiments/jpeg_restoration.py --data-dir data --shared-dir ../shared/cifar10 --out runs/restore
    for v in shared_jpeg restored; do
      python recipes/train.py --config recipes/configs/resnet20_short.yaml data.format=imagefolder \\
        data.dir=runs/restore/$v/train data.test_dir=runs/restore/val_exact data.val_size=0 \\
        data.mean=[0.4914,0.4822,0.4465] data.std=[0.2470,0.2435,0.2616] epochs=100 output=runs/restore/run_$v
    done
    python recipes/experiments/jpeg_training_cost.py score --data-dir data \\
      --runs runs/restore/run_shared_jpeg runs/restore/run_restored

The build prints each restorer's PSNR, before and after, on the half it restores and on the validation split's exact
images (neither trained on nor written into a training tree).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling experiment, run as a script or loaded by path
from jpeg_training_cost import training_set_and_masks, write_tree  # noqa: E402


def shared_jpeg_decodes(shared_dir: Path, indices: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 32, 32): training images `indices` as the shared copy's JPEG streams decode them (its build.py
    decodes the same way, then overwrites the exact ones)."""
    try:
        header = (shared_dir / 'jpeg_header.bin').read_bytes()
        scans = (shared_dir / 'train_scans.bin').read_bytes()
        offsets = np.load(shared_dir / 'train_offsets.npy')
    except FileNotFoundError as e:
        raise SystemExit(f'--shared-dir {shared_dir} lacks {Path(e.filename).name}: pass the folder holding the '
                         f'shared copy\'s JPEG streams (../shared/cifar10)') from None
    decoded = [np.asarray(Image.open(io.BytesIO(header + scans[offsets[i]:offsets[i + 1]])).convert('RGB'))
               for i in indices.tolist()]
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()


class Restorer(nn.Module):
    """3x3 convolutions with ReLU that predict the correction added to a JPEG-decoded image in [0, 1]."""

    def __init__(self, channels: int = 48, depth: int = 6):
        super().__init__()
        layers = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(channels, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast('cpu', torch.bfloat16, enabled=x.device.type == 'cpu'):
            return x + self.body(x).float()


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255).contiguous(memory_format=torch.channels_last)


def train_restorer(decoded: torch.Tensor, exact: torch.Tensor, epochs: int, seed: int, channels: int, depth: int,
                   batch_size: int = 64, lr: float = 2e-3) -> Restorer:
    """Fit a Restorer to uint8 pairs (decoded -> exact) with AdamW and a one-cycle schedule, random flips.
    Seeds torch's global generator, as the published measurement did: same seed, same restorer."""
    torch.manual_seed(seed)
    net = Restorer(channels, depth).to(memory_format=torch.channels_last)
    steps = max(1, len(decoded) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr, weight_decay=0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps)
    for _ in range(epochs):
        order = torch.randperm(len(decoded))
        for step in range(steps):
            pick = order[step * batch_size:(step + 1) * batch_size]
            x, y = _unit(decoded[pick]), _unit(exact[pick])
            if torch.rand(1).item() < 0.5:
                x, y = x.flip(3), y.flip(3)
            loss = (net(x) - y).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


@torch.no_grad()
def restore(net: Restorer, decoded: torch.Tensor) -> torch.Tensor:
    """uint8 in, uint8 out: the restorer's image, rounded back to 8 bits."""
    return torch.cat([net(_unit(b)).clamp(0, 1).mul(255).round().byte() for b in decoded.split(500)])


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over images of each image's PSNR in dB (uint8)."""
    mse = (images.float() - reference.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * torch.log10(255 ** 2 / mse)).mean().item()


def build(args: argparse.Namespace) -> None:
    images, labels, exact, in_val = training_set_and_masks(args)
    pairs = (exact & ~in_val).nonzero().squeeze(1)[:args.limit]
    val_exact = (exact & in_val).nonzero().squeeze(1)[:args.limit]
    decoded = shared_jpeg_decodes(args.shared_dir, pairs)
    val_decoded = shared_jpeg_decodes(args.shared_dir, val_exact)
    restored = decoded.clone()
    order = torch.from_numpy(np.random.default_rng(args.seed).permutation(len(pairs)))
    halves = (order[:len(pairs) // 2], order[len(pairs) // 2:])
    for k, (learn, apply) in enumerate([halves, halves[::-1]]):
        start = time.time()
        net = train_restorer(decoded[learn], images[pairs[learn]], args.epochs, args.seed + k, args.channels,
                             args.depth)
        restored[apply] = restore(net, decoded[apply])
        print(f'restorer {k}, trained on {len(learn):,} pairs in {time.time() - start:.0f} s. PSNR of the other '
              f'{len(apply):,}: {psnr(decoded[apply], images[pairs[apply]]):.2f} dB decoded, '
              f'{psnr(restored[apply], images[pairs[apply]]):.2f} dB restored; of the {len(val_exact):,} exact '
              f'validation images: {psnr(val_decoded, images[val_exact]):.2f} dB decoded, '
              f'{psnr(restore(net, val_decoded), images[val_exact]):.2f} dB restored', flush=True)
    for name, chosen in [('shared_jpeg/train', decoded), ('restored/train', restored)]:
        write_tree(args.out / name, chosen, labels[pairs], pairs)
    write_tree(args.out / 'val_exact', images[val_exact], labels[val_exact], val_exact)
    print(f'{args.out}: shared_jpeg/train and restored/train ({len(pairs):,} images each), '
          f'val_exact ({len(val_exact):,})')


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', type=Path, required=True, help='the shared copy, built by build.py')
    parser.add_argument('--shared-dir', type=Path, required=True, help='../shared/cifar10: its JPEG streams')
    parser.add_argument('--out', type=Path, required=True, help='folder for the three ImageFolder trees')
    parser.add_argument('--epochs', type=int, default=12, help='restorer epochs over its pairs')
    parser.add_argument('--channels', type=int, default=48)
    parser.add_argument('--depth', type=int, default=6, help='hidden 3x3 convolutions')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--val-size', type=int, default=5000)
    parser.add_argument('--split-seed', type=int, default=0)
    parser.add_argument('--limit', type=int, default=None, help='at most this many images per tree (smoke runs)')
    args = parser.parse_args(argv)
    build(args)


if __name__ == '__main__':
    main()
