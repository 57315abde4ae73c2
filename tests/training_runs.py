"""What the tests of training runs share: resnet20's recipe and the overrides that make a run of it take seconds."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / 'recipes' / 'train.py'
RESNET20 = REPO / 'recipes' / 'configs' / 'resnet20.yaml'


def tiny(cifar_root: Path, output: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long resnet20 run: 64 images, batch 16, tiny val/test, no progress bar."""
    return [f'data.dir={cifar_root}', 'data.verify_md5=false', 'data.limit=64', 'data.val_limit=32',
            'data.test_limit=32', 'batch_size=16', 'epochs=2', f'output={output}', 'log.progress=false',
            'log.tensorboard=false', 'deterministic=true', *extra]


def export_params(output: Path) -> dict[str, torch.Tensor]:
    """The weights a run exported."""
    return load_file(output / 'export' / 'model.safetensors')
