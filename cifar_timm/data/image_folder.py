"""Read a torchvision ImageFolder tree (`ROOT/<class name>/<image>`, any image size) into uint8 tensors of the
model's input size, once, so training and evaluation run on the same device-resident loader as CIFAR-10.

Classes are the sub-folder names in sorted order and images are found as torchvision's `ImageFolder` finds them
(recursively, by its `IMG_EXTENSIONS`), so a tree that works there works here. Unlike `ImageFolder`, a tree that
would train badly stops with an error naming the problem and the fix: fewer than two classes, a class folder
without images, files that are not images, images that do not decode. Hidden files (`.DS_Store`, ...) are skipped.
Each image is resized the way `cifar-timm predict` and timm's eval transform prepare one (`resolve_data_config` +
`create_transform` of the model's pretrained cfg: shorter side to the input size, centre crop), so a model sees the
same pixels in training and prediction.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import CifarTimmError

LAYOUT = 'ROOT/<class name>/<image>, e.g. ROOT/cat/001.png and ROOT/dog/002.jpg'
SPLIT_NAMES = {'train', 'training', 'val', 'valid', 'validation', 'test', 'testing'}  # folders of splits, not classes


class ImageFolderError(CifarTimmError):
    """An ImageFolder tree that cannot be trained on as it is."""


class ImageFolderSplit(NamedTuple):
    """`images` uint8 (N, 3, H, W) RGB at the model's input size, `labels` int64 (N,), `classes` by label."""
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def scan_image_folder(root: Union[str, Path]) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(classes, [(image path, label)]) of an ImageFolder tree, or an ImageFolderError saying what is wrong."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(f'{root} is not a folder: pass an ImageFolder tree, {LAYOUT}')
    entries = sorted(p for p in root.iterdir() if not p.name.startswith('.'))
    classes = tuple(p.name for p in entries if p.is_dir())
    loose = [p for p in entries if p.is_file()]
    if not classes:
        found = f' (it holds {len(loose)} files directly)' if loose else ''
        raise ImageFolderError(f'{root} has no class folders{found}: an ImageFolder tree is {LAYOUT}; put the images '
                               f'of each class into a sub-folder named after the class')
    if len(classes) == 1:
        raise ImageFolderError(f'{root} has one class folder ({classes[0]}); a classifier needs at least two: add one '
                               f'folder per class ({LAYOUT})')
    splits = [c for c in classes if c.lower() in SPLIT_NAMES]
    if splits and any(p.is_dir() for p in (root / splits[0]).iterdir()):
        train = next((c for c in splits if c.lower().startswith('train')), splits[0])
        others = [c for c in splits if c != train]
        test = f' (and data.test_dir={root / others[-1]} to test on another)' if others else ''
        raise ImageFolderError(f'{root} looks like a folder of splits ({", ".join(classes)}), not of classes: pass '
                               f'the training split as the tree, data.dir={root / train}{test}')
    samples, empty, not_images = [], [], []
    for label, name in enumerate(classes):
        files = _files_under(root / name)
        images = [p for p in files if p.suffix.lower() in IMG_EXTENSIONS]
        not_images += [p for p in files if p.suffix.lower() not in IMG_EXTENSIONS]
        if not images:
            empty.append(root / name)
        samples += [(p, label) for p in images]
    if empty:
        raise ImageFolderError(
            f'class folders without images: {", ".join(map(str, empty))}. Add images ({", ".join(IMG_EXTENSIONS)}) '
            f'or remove the folders')
    if not_images:
        more = f' and {len(not_images) - 5} more' if len(not_images) > 5 else ''
        listed = ', '.join(map(str, not_images[:5])) + more
        raise ImageFolderError(
            f'{len(not_images)} files in {root} are not images by their extension ({listed}): move them out of the '
            f'tree, or convert them to one of {", ".join(IMG_EXTENSIONS)}')
    return classes, samples


def _files_under(folder: Path) -> list[Path]:
    """Every non-hidden file below `folder`, in a stable order (torchvision's walk also follows links)."""
    files = []
    for dirpath, dirnames, filenames in sorted(os.walk(folder, followlinks=True)):
        dirnames[:] = [d for d in dirnames if not d.startswith('.')]
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith('.')]
    return files


def load_image_folder(
        root: Union[str, Path],
        pretrained_cfg: dict[str, Any],
        classes: Optional[Sequence[str]] = None,
) -> ImageFolderSplit:
    """Decode and resize every image of the tree at `root` once, as the model with `pretrained_cfg` expects them.

    `classes`, when given (a test tree read after the training tree), must be the tree's class folders.
    """
    found, samples = scan_image_folder(root)
    if classes is not None and tuple(classes) != found:
        raise ImageFolderError(
            f'the class folders of {root} ({", ".join(found)}) are not those the model is trained on '
            f'({", ".join(classes)}): give both trees the same class folders')
    transform = uint8_eval_transform(pretrained_cfg)
    images = torch.stack([transform(_open_rgb(path)) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return ImageFolderSplit(images, labels, found)


def uint8_eval_transform(pretrained_cfg: dict[str, Any]):
    """PIL image -> uint8 (3, H, W) at the model's input size: timm's eval transform for the cfg, without the
    normalisation (the loader normalises), so the pixels are the ones `cifar-timm predict` feeds the model."""
    from timm.data import create_transform, resolve_data_config
    config = resolve_data_config(pretrained_cfg=pretrained_cfg)
    to_unit = create_transform(**dict(config, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), is_training=False)
    return lambda image: to_unit(image).mul(255).round().to(torch.uint8)


def _open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert('RGB')
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageFolderError(f'{path} is not a readable image ({e}): replace it with a valid image file, or delete '
                               f'it') from e
