"""Deterministic index sets: the train/validation split used for tuning, and index slices from the command line."""
from __future__ import annotations

import torch

from ..constants import CIFAR10_NUM_TRAIN
from ..errors import CifarTimmError


def train_val_indices(
        num_train: int = CIFAR10_NUM_TRAIN, val_size: int = 5000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split `range(num_train)` into (train_idx, val_idx), both sorted int64, by a permutation seeded with `seed`.

    The same arguments give the same split on every machine (torch's CPU generator). `val_size=0` keeps all images
    for training and returns an empty validation set.
    """
    if not 0 <= val_size < num_train:
        raise CifarTimmError(f'val_size={val_size} must be in [0, {num_train}): choose a smaller validation split')
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def parse_index_slice(text: str, n: int) -> slice:
    """Parse `START:STOP` (either end may be empty) into a slice of `range(n)`; a clear error when out of range."""
    parts = text.split(':')
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else n
    except ValueError:
        raise CifarTimmError(f'--indices {text!r} is not START:STOP (e.g. 0:1017 for the exact test images)') from None
    if not 0 <= start < stop <= n:
        raise CifarTimmError(f'--indices {text!r} is outside 0:{n} or empty: use 0 <= START < STOP <= {n}')
    return slice(start, stop)
