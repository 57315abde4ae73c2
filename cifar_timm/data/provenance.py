"""Which images of a CIFAR-10 copy carry the original pixels, and the JPEG round trip the others went through.

The shared copy of the project machines (../shared/cifar10) is mostly JPEG-decoded; its build script writes
`provenance.npz` (boolean `train_exact`, `test_exact`) next to `cifar-10-batches-py/`. The official download has no
such file and is exact throughout, so there is nothing to split and `exact_mask` returns None.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image

from .cifar10 import CifarDataError

PROVENANCE_FILE = 'provenance.npz'
# The shared copy's lossy images: a public JPEG copy at quality about 75 with 4:2:0 chroma (../shared/cifar10).
SHARED_COPY_JPEG_QUALITY = 75


def exact_mask(root: Union[str, Path], split: str, n: int) -> Optional[torch.Tensor]:
    """Boolean (n,) mask of the exact images of `split`; None when the copy has no provenance file (all exact)."""
    path = Path(root) / PROVENANCE_FILE
    if not path.is_file():
        return None
    key = f'{split}_exact'
    try:
        with np.load(path, allow_pickle=False) as data:
            mask = torch.from_numpy(np.asarray(data[key], dtype=bool))
    except (KeyError, ValueError, OSError) as e:
        raise CifarDataError(f'{path} has no readable boolean {key!r} array ({e}); rebuild the copy with '
                             f'`python ../shared/cifar10/build.py {root}` or delete the file to treat every image '
                             f'as exact') from e
    if mask.shape != (n,):
        raise CifarDataError(f'{path}: {key} marks {tuple(mask.shape)} images but the {split} split has {n}; the '
                             f'file belongs to another copy: rebuild it with ../shared/cifar10/build.py')
    return mask


def jpeg_round_trip(images: torch.Tensor, quality: int = SHARED_COPY_JPEG_QUALITY) -> torch.Tensor:
    """uint8 (N, 3, H, W) images encoded as JPEG (4:2:0) and decoded again, as the shared copy's lossy images were."""
    out = torch.empty_like(images)
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format='JPEG', quality=quality, subsampling='4:2:0')
        out[i] = torch.from_numpy(np.array(Image.open(buf).convert('RGB'))).permute(2, 0, 1)
    return out
