"""The conventional input pipeline, for comparison and for users who want one: a torch DataLoader whose workers
turn each image into a PIL image and run torchvision transforms on it (pad-crop, flip, ToTensor, Normalize), the
way `torchvision.datasets.CIFAR10` with the seeds' transforms does."""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ..constants import CIFAR10_MEAN, CIFAR10_STD


class TransformCifarDataset(Dataset):
    """uint8 (N, 3, H, W) images as PIL images through a torchvision transform, with their int labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Optional[Callable] = None):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, what PIL expects
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


def cifar_transforms(
        train: bool = True,
        pad: int = 4,
        pad_mode: str = 'constant',
        flip: bool = True,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
) -> transforms.Compose:
    """Pad-crop + flip (train) and ToTensor + Normalize, as torchvision transforms."""
    steps = []
    if train and pad > 0:
        steps.append(transforms.RandomCrop(32, padding=pad, padding_mode=pad_mode))
    if train and flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def torchvision_loader(
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool = True,
        num_workers: Optional[int] = None,
        pad: int = 4,
        pad_mode: str = 'constant',
        flip: bool = True,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        seed: int = 0,
        drop_last: bool = True,
        pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader of `(x, y)` float32 NCHW batches on the host; `num_workers` defaults to the CPU count.

    `seed` fixes the shuffle order and, through the DataLoader's per-worker seeding, the augmentations when
    `num_workers > 0`; with `num_workers=0` the transforms draw from the global torch generator.
    """
    dataset = TransformCifarDataset(images, labels, cifar_transforms(train, pad, pad_mode, flip, mean, std))
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=drop_last if train else False,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
    )
