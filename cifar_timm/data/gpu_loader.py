"""A data loader that keeps the whole split on the device as uint8 and builds each batch with a few tensor ops.

The idea is airbench's (KellerJordan/cifar10-airbench): no DataLoader workers, no per-image Python and no host
copies per step. The images are padded once when the loader is built. A batch's random crop is then two copies of
contiguous memory, never one index per pixel: `index_select` takes the H rows of each crop as whole padded rows,
and one indexing of `unfold`'s window view takes each row's W columns from the crop's column offset. A flip is a
`torch.where` against the flipped batch; one multiply-add normalises; cutout zeroes a square (zero = the mean
pixel, as in DeVries & Taylor's Cutout, which runs after Normalize); then the dtype and memory format are set.
Nothing here waits on the device (no boolean-mask indexing), so on a GPU the whole batch is queued asynchronously.

Reproducibility: each epoch's order and every sample's augmentation (crop offsets, flip, cutout centre) are drawn
once per epoch from a CPU generator seeded by (seed, epoch), one draw per POSITION in the epoch order. So the
batches do not depend on the device, the batch size or the number of ranks: rank r of R at step i gets positions
[i*B + r*B/R, i*B + (r+1)*B/R) of the epoch order, and a 2-rank run with global batch B sees exactly the samples of
a 1-rank run with batch B/2 and gradient accumulation 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..constants import CIFAR10_MEAN, CIFAR10_STD
from ..errors import CifarTimmError

PAD_MODES = ('constant', 'reflect')


@dataclass
class _EpochPlan:
    """The epoch order and per-position augmentation draws, all on the loader's device."""
    order: torch.Tensor  # (N,) int64, dataset index at each position
    dy: torch.Tensor  # (N,) crop row offset in [0, 2*pad]
    dx: torch.Tensor  # (N,) crop column offset in [0, 2*pad]
    flip: torch.Tensor  # (N,) bool
    cutout_y: torch.Tensor  # (N,) cutout centre row in [0, H)
    cutout_x: torch.Tensor  # (N,) cutout centre column in [0, W)


class GpuCifarLoader:
    """Device-resident batches of normalised, augmented CIFAR images: iterate to get `(x, y)` on `device`.

    Args:
        images: uint8 (N, 3, H, W) RGB images (any device; copied to `device` once).
        labels: int64 (N,) labels.
        batch_size: GLOBAL batch size (summed over ranks); each rank yields batch_size // num_replicas.
        train: augment and shuffle; `train=False` gives ordered, unaugmented batches and keeps the last partial one.
        device, dtype, channels_last: where, in what dtype and memory format the batches come out.
        pad, pad_mode: pixels added on each side before the random crop; 'constant' (zeros, i.e. black, as
            torchvision's RandomCrop(padding=4)) or 'reflect' (torch's reflect mode: the edge is not repeated).
        flip: random horizontal flip with probability 1/2.
        cutout: side of the square zeroed after normalisation (0 = off).
        mean, std: per-channel normalisation on [0, 1] pixels.
        seed: with the epoch, fixes the order and every augmentation of that epoch.
        drop_last: drop the last partial batch (train only).
        num_replicas, rank: data-parallel slicing of each global batch.
    """

    def __init__(
            self,
            images: torch.Tensor,
            labels: torch.Tensor,
            batch_size: int,
            *,
            train: bool = True,
            device: Union[str, torch.device] = 'cpu',
            dtype: torch.dtype = torch.float32,
            channels_last: bool = False,
            pad: int = 4,
            pad_mode: str = 'constant',
            flip: bool = True,
            cutout: int = 0,
            mean: Sequence[float] = CIFAR10_MEAN,
            std: Sequence[float] = CIFAR10_STD,
            seed: int = 0,
            drop_last: bool = True,
            num_replicas: int = 1,
            rank: int = 0,
    ):
        _check_args(images, labels, batch_size, pad, pad_mode, cutout, seed, num_replicas, rank, train)
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.dtype = dtype
        self.channels_last = channels_last
        self.pad = pad if train else 0
        self.pad_mode = pad_mode
        self.flip = flip
        self.cutout = cutout
        self.seed = seed
        self.drop_last = drop_last if train else False
        self.num_replicas = num_replicas
        self.rank = rank
        self.image_size = tuple(images.shape[-2:])
        self.num_images = len(images)
        self.epoch = 0
        self.step = 0  # batches of the current epoch already handed out

        self.pixels = _pad(images.to(self.device), self.pad, pad_mode).contiguous()  # (N, C, H+2p, W+2p) uint8
        self.labels = labels.to(self.device, torch.int64)
        channels = images.shape[1]
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(channels, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)  # (x/255 - mean) / std == x * scale + shift
        self._shift = -torch.tensor(mean, dtype=torch.float32, device=self.device).view(channels, 1, 1) / std_t
        self._channel_ids = torch.arange(channels, device=self.device)
        self._rows = torch.arange(self.image_size[0], device=self.device)
        self._cols = torch.arange(self.image_size[1], device=self.device)

    def __len__(self) -> int:
        """Steps per epoch (the same on every rank)."""
        if self.drop_last:
            return self.num_images // self.batch_size
        return -(-self.num_images // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next. A new epoch starts at step 0; re-selecting the current epoch keeps
        the step, so `load_state_dict` followed by `set_epoch(same epoch)` still resumes mid-epoch."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.step = 0

    def state_dict(self) -> dict[str, Any]:
        return {'epoch': self.epoch, 'step': self.step, 'batch_size': self.batch_size, 'seed': self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ('batch_size', 'seed'):
            if key in state and state[key] != getattr(self, key):
                raise CifarTimmError(
                    f'loader state was saved with {key}={state[key]} but this loader has {key}={getattr(self, key)}: '
                    f'resume with the same {key}, or start the epoch afresh')
        self.epoch = int(state['epoch'])
        self.step = int(state['step'])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the rest of the current epoch from `self.step`; after the last batch the epoch advances by one."""
        plan = self._epoch_plan(self.epoch)
        steps = len(self)
        while self.step < steps:
            lo, hi = self._rank_positions(self.step)
            self.step += 1  # counted as handed out, so a checkpoint taken after this batch resumes at the next
            yield self._make_batch(plan, lo, hi)
        self.epoch += 1
        self.step = 0

    def _rank_positions(self, step: int) -> tuple[int, int]:
        """This rank's [lo, hi) in the epoch order at `step` (an uneven last batch is split as evenly as possible)."""
        start = step * self.batch_size
        size = min(self.batch_size, self.num_images - start)
        base, extra = divmod(size, self.num_replicas)
        lo = start + self.rank * base + min(self.rank, extra)
        return lo, lo + base + (1 if self.rank < extra else 0)

    def _epoch_plan(self, epoch: int) -> _EpochPlan:
        n, (h, w) = self.num_images, self.image_size
        if not self.train:
            zeros = torch.zeros(n, dtype=torch.int64, device=self.device)
            return _EpochPlan(torch.arange(n, device=self.device), zeros, zeros, zeros.bool(), zeros, zeros)
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        # Always draw every stream in the same order, so switching flip or cutout off does not change the crops.
        order = torch.randperm(n, generator=g)
        dy = torch.randint(2 * self.pad + 1, (n,), generator=g)
        dx = torch.randint(2 * self.pad + 1, (n,), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        cutout_y = torch.randint(h, (n,), generator=g)
        cutout_x = torch.randint(w, (n,), generator=g)
        if not self.flip:
            flip.zero_()
        return _EpochPlan(*(t.to(self.device) for t in (order, dy, dx, flip, cutout_y, cutout_x)))

    def _make_batch(self, plan: _EpochPlan, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = plan.order[lo:hi]
        if self.train:
            pixels = self._crop(idx, plan.dy[lo:hi], plan.dx[lo:hi])
            pixels = torch.where(plan.flip[lo:hi, None, None, None], pixels.flip(3), pixels)
        else:
            pixels = self.pixels.index_select(0, idx)
        x = torch.mul(pixels, self._scale).add_(self._shift)  # float32 NCHW, one pass from uint8
        if self.train and self.cutout > 0:
            x.masked_fill_(self._cutout_mask(plan.cutout_y[lo:hi], plan.cutout_x[lo:hi]), 0.0)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(self.dtype, memory_format=memory_format), self.labels[idx]

    def _crop(self, idx: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """uint8 (b, C, H, W): for each image idx[k], the window at (dy[k], dx[k]) of its padded copy."""
        b, channels, (h, w) = len(idx), self.pixels.shape[1], self.image_size
        padded_h, padded_w = self.pixels.shape[-2:]
        # Rows: the flat row number of every (image, channel, crop row) in the (N*C*H', W') row view.
        first_rows = (idx[:, None, None] * channels + self._channel_ids[:, None]) * padded_h  # (b, C, 1)
        row_ids = first_rows + (dy[:, None] + self._rows)[:, None]  # (b, C, H)
        rows = self.pixels.view(-1, padded_w).index_select(0, row_ids.flatten())  # (b*C*H, W')
        # Columns: unfold views each row as its 2p+1 windows of width W; pick the crop's window per row.
        windows = rows.unfold(1, w, 1)  # (b*C*H, 2p+1, W), a view
        per_row_dx = dx[:, None].expand(b, channels * h).flatten()
        return windows[torch.arange(len(rows), device=self.device), per_row_dx].view(b, channels, h, w)

    def _cutout_mask(self, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
        """(b, 1, H, W) True inside each image's cutout square (centre anywhere, clipped at the border)."""
        half = self.cutout // 2
        in_rows = (self._rows >= (cy - half)[:, None]) & (self._rows < (cy - half + self.cutout)[:, None])
        in_cols = (self._cols >= (cx - half)[:, None]) & (self._cols < (cx - half + self.cutout)[:, None])
        return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _epoch_seed(seed: int, epoch: int) -> int:
    """One 63-bit generator seed from (seed, epoch), well mixed so nearby pairs give unrelated streams."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _pad(images: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Pad uint8 (N, C, H, W) by `pad` on each side; reflect is done by indexing since F.pad lacks it for uint8."""
    if pad == 0:
        return images
    if mode == 'constant':
        return F.pad(images, (pad, pad, pad, pad))
    h, w = images.shape[-2:]
    rows = _reflect_index(h, pad, images.device)
    cols = _reflect_index(w, pad, images.device)
    return images[:, :, rows][:, :, :, cols]


def _reflect_index(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of each padded position under torch's 'reflect' mode (…2 1 | 0 1 2 … n-1 | n-2 n-3…)."""
    i = torch.arange(-pad, size + pad, device=device).abs()
    return torch.where(i > size - 1, 2 * (size - 1) - i, i)


def _check_args(images, labels, batch_size, pad, pad_mode, cutout, seed, num_replicas, rank, train) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise CifarTimmError(f'images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}: '
                             f'pass CifarSplit.images from load_cifar10')
    if len(labels) != len(images):
        raise CifarTimmError(f'{len(images)} images but {len(labels)} labels: pass matching tensors')
    if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
        raise CifarTimmError(f'need batch_size >= 1 and 0 <= rank < num_replicas, got batch_size={batch_size}, '
                             f'rank={rank}, num_replicas={num_replicas}')
    if train and batch_size % num_replicas:
        raise CifarTimmError(f'global batch_size {batch_size} is not divisible by {num_replicas} ranks: '
                             f'choose a multiple of the number of processes')
    if pad_mode not in PAD_MODES:
        raise CifarTimmError(f'pad_mode {pad_mode!r} is not one of {PAD_MODES}')
    if pad < 0 or (pad_mode == 'reflect' and pad >= min(images.shape[-2:])):
        raise CifarTimmError(f'pad={pad} must be >= 0 (and smaller than the image for reflect)')
    if cutout < 0 or seed < 0:
        raise CifarTimmError(f'cutout ({cutout}) and seed ({seed}) must be >= 0')
