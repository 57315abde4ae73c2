"""Read CIFAR-10 from the standard `cifar-10-batches-py` layout (what torchvision downloads) into uint8 tensors.

`root` is torchvision's root: the folder that holds `cifar-10-batches-py/`. The official file names, md5 sums and
archive URL are torchvision's own (`torchvision.datasets.CIFAR10`), so there is no second copy of them here. The
shared copy on these machines (../shared/cifar10) is rebuilt from partial sources and cannot match the official
sums: it is read with `verify_md5=False`.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np
import torch
from torchvision.datasets import CIFAR10 as _TorchvisionCIFAR10
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from ..constants import CIFAR10_NUM_CLASSES
from ..errors import CifarTimmError
from .batch_unpickler import RefusedGlobal, load_batch

BASE_FOLDER = _TorchvisionCIFAR10.base_folder
TRAIN_FILES = tuple((name, md5) for name, md5 in _TorchvisionCIFAR10.train_list)
TEST_FILES = tuple((name, md5) for name, md5 in _TorchvisionCIFAR10.test_list)
META_FILE = (_TorchvisionCIFAR10.meta['filename'], _TorchvisionCIFAR10.meta['md5'])
# Module constants so a test can point the download at an unreachable address and check the offline error.
CIFAR10_URL = _TorchvisionCIFAR10.url
CIFAR10_ARCHIVE_MD5 = _TorchvisionCIFAR10.tgz_md5
SPLITS = ('train', 'test')


class CifarDataError(CifarTimmError):
    """The CIFAR-10 files are missing, unreadable or fail their checksum."""


class CifarSplit(NamedTuple):
    """One split: `images` uint8 (N, 3, 32, 32) CHW RGB, `labels` int64 (N,)."""
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_cifar10(
        root: Union[str, Path],
        split: str = 'train',
        verify_md5: bool = True,
        download: bool = False,
) -> CifarSplit:
    """Load the `train` (50,000) or `test` (10,000) split from `root/cifar-10-batches-py/`.

    With `verify_md5` every file is checked against the official md5 sum first. With `download` a missing folder is
    fetched from the official URL (the archive's md5 is always checked).
    """
    if split not in SPLITS:
        raise CifarDataError(f'unknown split {split!r}: use one of {", ".join(SPLITS)}')
    root = Path(root).expanduser()
    folder = root / BASE_FOLDER
    if not folder.is_dir() and download:
        download_cifar10(root)
    if not folder.is_dir():
        raise CifarDataError(
            f'no CIFAR-10 at {folder}: pass the folder that holds {BASE_FOLDER}/ (torchvision\'s root), '
            f'download it (load_cifar10(..., download=True); in a recipe data.download=true), or on these machines '
            f'build the shared copy with `python ../shared/cifar10/build.py {root}` (then read it with '
            f'verify_md5=False: --no-verify-md5 / data.verify_md5=false)')
    files = TRAIN_FILES if split == 'train' else TEST_FILES
    if verify_md5:
        verify_files(root, files + (META_FILE,))
    images, labels = [], []
    for name, _ in files:
        batch = _read_batch(folder / name)
        images.append(batch['data'])
        labels.extend(batch['labels'])
    images = np.concatenate(images).reshape(-1, 3, 32, 32)
    return CifarSplit(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64))


def verify_files(root: Union[str, Path], files=TRAIN_FILES + TEST_FILES + (META_FILE,)) -> None:
    """Raise CifarDataError unless every `(name, md5)` file under `root/cifar-10-batches-py` matches its sum."""
    folder = Path(root) / BASE_FOLDER
    bad = [name for name, md5 in files if not check_integrity(str(folder / name), md5)]
    if bad:
        raise CifarDataError(
            f'{", ".join(bad)} in {folder} do not match the official CIFAR-10 md5 sums. If this is the shared '
            f'rebuilt copy (../shared/cifar10), that is expected: skip the check with verify_md5=False '
            f'(CLI: --no-verify-md5, YAML: data.verify_md5: false). Otherwise the files are damaged: delete '
            f'{folder} and download again.')


def download_cifar10(root: Union[str, Path]) -> None:
    """Fetch and unpack the official archive into `root` (torchvision's helpers); a clear error when offline."""
    root = Path(root).expanduser()
    try:
        download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_ARCHIVE_MD5)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad archive md5 is a RuntimeError
        raise CifarDataError(
            f'could not download CIFAR-10 from {CIFAR10_URL} ({e}). Check the network, or fetch that archive '
            f'elsewhere and unpack it into {root} so that {root / BASE_FOLDER} exists.') from e


def _read_batch(path: Path) -> dict:
    try:
        with open(path, 'rb') as f:
            batch = load_batch(f)
        data = np.asarray(batch['data'], dtype=np.uint8)
        labels = [int(label) for label in batch['labels']]
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(f'unexpected data shape {data.shape} for {len(labels)} labels')
    except RefusedGlobal as e:
        raise CifarDataError(f'refused CIFAR-10 batch {path}: {e}. The file is not CIFAR-10 (or was tampered with): '
                             f'delete {path.parent} and download it again (download=True) or rebuild the shared '
                             f'copy') from None
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
        raise CifarDataError(
            f'cannot read CIFAR-10 batch {path} ({e}): the folder is incomplete or damaged; '
            f'download it again (download=True) or rebuild the shared copy') from e
    bad = sorted({label for label in labels if not 0 <= label < CIFAR10_NUM_CLASSES})
    if bad:
        raise CifarDataError(f'CIFAR-10 batch {path} holds labels {", ".join(map(str, bad[:5]))} outside 0-'
                             f'{CIFAR10_NUM_CLASSES - 1}: the file is damaged or not CIFAR-10; download it again '
                             f'(download=True) or rebuild the shared copy')
    return {'data': data, 'labels': labels}
