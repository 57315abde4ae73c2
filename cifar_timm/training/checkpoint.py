"""Training checkpoints: written atomically, found again by `resume=auto`, pruned to the newest few.

A checkpoint holds everything a run needs to continue bit-for-bit: model, optimizer, scheduler, loss scaler,
EMA, the loader position and the RNG states (Python, NumPy, torch CPU and CUDA). Files are named by the number of
optimizer steps done, `step-00001234.pt`, so the newest is the largest number; a file is written to a temporary
name and renamed into place, so a kill mid-write never leaves a truncated checkpoint behind.

A checkpoint holds only tensors and plain Python values (the NumPy RNG state is stored as a tensor), so it is read
with `torch.load(weights_only=True)`: a planted or downloaded `.pt` file cannot run code when a run resumes.
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


# How torch's weights-only unpickler words a refused global, class or object (its other errors mean a damaged file).
_REFUSALS = ('Unsupported global', 'Trying to load unsupported GLOBAL', 'Can only build', 'Can only create')
# What `_Run._save_checkpoint` writes; a file without them is not a training checkpoint of ours.
CHECKPOINT_KEYS = ('model', 'optimizer', 'loader', 'epoch', 'num_updates', 'train_time_s', 'rng', 'config')


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, read without running any code it may carry; CheckpointError naming the file."""
    _allow_legacy_numpy_rng()
    fix = 'delete it to resume from an older one, or start afresh in another output=... folder'
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        lines = [line.replace('WeightsUnpickler error:', '').strip() for line in str(e).splitlines()]
        refusal = next((line for line in lines if line.startswith(_REFUSALS)), None)
        if refusal:  # torch's weights-only unpickler refused what the pickle asked for
            raise CheckpointError(f'refused checkpoint {path}: it asks to build or call something a cifar-timm '
                                  f'checkpoint never holds ({refusal[:200]}), so it was not loaded and nothing in it '
                                  f'ran; {fix}') from None
        raise CheckpointError(f'cannot read checkpoint {path} ({type(e).__name__}: {lines[-1][:300]}); {fix}') from e
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f'{path} is not a cifar-timm training checkpoint (it lacks {", ".join(missing)}); '
                              f'resume reads the step-*.pt files recipes/train.py writes: {fix}')
    return state


def _allow_legacy_numpy_rng() -> None:
    """Checkpoints written before the NumPy RNG state became a tensor pickle it as a uint32 ndarray: admit exactly
    the NumPy types an array needs (its class, dtype and empty-array constructor), so runs in progress still resume."""
    reconstruct = np.ndarray(0).__reduce__()[0]  # numpy.core / numpy._core .multiarray._reconstruct
    torch.serialization.add_safe_globals([reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))])


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        'python': random.getstate(),
        # as a tensor, so the checkpoint needs no NumPy types to load (int64: older torch lacks uint32 tensors)
        'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': pos,
                  'has_gauss': has_gauss, 'cached_gaussian': cached_gaussian},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state['python'])
    numpy_state = state['numpy']
    if isinstance(numpy_state, dict):
        numpy_state = (numpy_state['kind'], numpy_state['keys'].numpy().astype(np.uint32), numpy_state['pos'],
                       numpy_state['has_gauss'], numpy_state['cached_gaussian'])
    np.random.set_state(numpy_state)  # a tuple: a checkpoint from before the tensor form
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
