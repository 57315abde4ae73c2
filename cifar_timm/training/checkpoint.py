"""Training checkpoints: written atomically, found again by `resume=auto`, pruned to the newest few.

A checkpoint holds everything a run needs to continue bit-for-bit: model, optimizer, scheduler, loss scaler,
EMA, the loader position and the RNG states (Python, NumPy, torch CPU and CUDA). Files are named by the number of
optimizer steps done, `step-00001234.pt`, so the newest is the largest number; a file is written to a temporary
name and renamed into place, so a kill mid-write never leaves a truncated checkpoint behind.
"""
from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CifarTimmError
from ..hub import write_bytes_atomic

_NAME = re.compile(r'^step-(\d+)\.pt$')


class CheckpointError(CifarTimmError):
    """A checkpoint that cannot be read or does not fit the run."""


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f'step-{step:08d}.pt'


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: Path) -> Optional[Path]:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(state: dict[str, Any], path: Path, keep: int = 0) -> Path:
    """Write `state` atomically to `path`; then delete all but the newest `keep` checkpoints (0 keeps all)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    if keep > 0:
        for old in list_checkpoints(path.parent)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # a foreign or damaged file: say which and what to do
        raise CheckpointError(f'cannot read checkpoint {path} ({e}); delete it to resume from an older one, '
                              f'or start afresh with resume=null') from e


def rng_state() -> dict[str, Any]:
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
