"""What a run trains and is tested on: CIFAR-10 (the recipes' data) or the user's own images as an ImageFolder tree
(`data.format=imagefolder data.dir=ROOT`).

Both come out alike: uint8 images at the model's input size, split into training and validation by
`train_val_indices` (one split logic for both), and a test split read once, when the run ends. CIFAR-10's test split
is its official one, with the exact images 0-1016 measured on their own; an ImageFolder run is tested on
`data.test_dir` (a second tree with the same class folders) when there is one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..constants import CIFAR10_CLASSES, CIFAR10_NAME, EXACT_TEST_SLICE
from .config import ConfigError

Split = tuple[torch.Tensor, torch.Tensor]  # uint8 (N, 3, H, W) images, int64 (N,) labels


@dataclass
class TrainingData:
    name: str                                   # what the model card calls the dataset
    classes: tuple[str, ...]                    # class names by label
    train: Split
    val: Split
    load_test: Callable[[], Optional[Split]]    # the test split, read when the run ends (None: the run has none)
    exact_test: Optional[slice] = None          # test images known to be exact (CIFAR-10's shared copy)
    val_exact: Optional[torch.Tensor] = None    # which validation images are exact, when some are JPEG-decoded

    @property
    def own_images(self) -> bool:
        """Trained on the user's images rather than CIFAR-10."""
        return self.exact_test is None


def load_training_data(data_cfg: dict[str, Any], pretrained_cfg: dict[str, Any]) -> TrainingData:
    """The training and validation splits `data_cfg` describes, for a model with `pretrained_cfg` (its input size)."""
    d = data_cfg
    if d['format'] == 'imagefolder':
        from ..data import load_image_folder
        if not d['dir'] or not Path(d['dir']).expanduser().is_dir():
            raise ConfigError(f'data.format=imagefolder needs data.dir=ROOT, a folder with one sub-folder of images '
                              f'per class; data.dir={d["dir"]!r} is not a folder')
        images, labels, classes = load_image_folder(d['dir'], pretrained_cfg)
        name = d['name'] or Path(d['dir']).expanduser().resolve().name

        def load_test() -> Optional[Split]:
            if not d['test_dir']:
                return None
            return tuple(load_image_folder(d['test_dir'], pretrained_cfg, classes=classes)[:2])
        train_idx, val_idx = _split(len(labels), d, name)
        val_exact = exact = None
    else:
        from ..data import load_cifar10
        from ..data.provenance import exact_mask
        images, labels = load_cifar10(d['dir'], 'train', verify_md5=d['verify_md5'], download=d['download'])
        name, classes, exact = CIFAR10_NAME, CIFAR10_CLASSES, EXACT_TEST_SLICE

        def load_test() -> Optional[Split]:
            return tuple(load_cifar10(d['dir'], 'test', verify_md5=d['verify_md5'], download=d['download']))
        train_idx, val_idx = _split(len(labels), d, name)
        # the shared copy is mostly JPEG-decoded: validation reports its exact and JPEG parts apart, since users feed
        # clean images (None for a copy that is exact throughout)
        mask = exact_mask(d['dir'], 'train', len(labels))
        val_exact = mask[val_idx] if mask is not None and 0 < int(mask[val_idx].sum()) < len(val_idx) else None
    return TrainingData(name, tuple(classes), (images[train_idx], labels[train_idx]),
                        (images[val_idx], labels[val_idx]), load_test, exact, val_exact)


def _split(n: int, d: dict[str, Any], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    from ..data import train_val_indices
    if not 0 <= d['val_size'] < n:
        raise ConfigError(f'data.val_size={d["val_size"]} images cannot be held out of the {n} images of {name}: '
                          f'set data.val_size to fewer, e.g. data.val_size={n // 10} (0 = no validation split)')
    train_idx, val_idx = train_val_indices(n, d['val_size'], seed=d['split_seed'])
    train_idx = train_idx[:d['limit']] if d['limit'] else train_idx
    val_idx = val_idx[:d['val_limit']] if d['val_limit'] is not None else val_idx
    return train_idx, val_idx
