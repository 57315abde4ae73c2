"""Read a source project's checkpoint file into `{name: tensor}`, in the source's own names, without running its code.

PyTorch files go through `torch.load(weights_only=True)`, which rebuilds tensors and plain containers only and
refuses any other pickled object. Keras HDF5 files are read with h5py (the optional `keras` extra) through the
`layer_names` / `weight_names` attributes Keras writes, so a full-model file and a `save_weights` file both work.
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CifarTimmError


class ConversionError(CifarTimmError):
    """A checkpoint that cannot be converted as asked: unreadable, unsafe, or not the architecture named."""


def read_torch_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict of a PyTorch checkpoint: the file itself or its 'state_dict' entry (akamaster's layout)."""
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' not in str(e):
            raise _damaged(path, e) from e
        raise ConversionError(
            f'{path} pickles objects other than tensors and plain containers ({_first_line(e)}). The converter only '
            f'reads weights (torch.load(weights_only=True)) and never runs code from a file: load the model where '
            f'you trust the file, save `model.state_dict()` with torch.save, and convert that.') from e
    except Exception as e:  # truncated or damaged: torch reports it as EOFError, RuntimeError, struct.error...
        raise _damaged(path, e) from e
    state_dict = obj.get('state_dict', obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state_dict, Mapping) or not state_dict or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise ConversionError(
            f'{path} holds no state_dict (a mapping of tensor names to tensors, at the top or under "state_dict"): '
            f'pass the weights file the source project published.')
    return dict(state_dict)


def read_keras_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every weight of a Keras HDF5 file, named `<layer>/<weight>` (e.g. `stem_conv/kernel`), in Keras's layouts."""
    try:
        import h5py
    except ImportError:
        raise ConversionError(
            'reading Keras .h5 files needs h5py: pip install "cifar-timm[keras]" (or pip install h5py)') from None
    tensors = {}
    try:
        with h5py.File(path, 'r') as f:
            weights = f['model_weights'] if 'model_weights' in f else f  # full model vs save_weights file
            for layer in map(_text, weights.attrs['layer_names']):
                group = weights[layer]
                for weight in map(_text, group.attrs['weight_names']):
                    # 'stage1_res_block1_bn1/gamma:0' -> 'stage1_res_block1_bn1/gamma'
                    name = f'{layer}/{weight.rsplit("/", 1)[-1].split(":")[0]}'
                    tensors[name] = torch.from_numpy(group[weight][()])
    except (OSError, KeyError, ValueError) as e:
        raise _damaged(path, e, kind='Keras HDF5 weights file') from e
    if not tensors:
        raise ConversionError(f'{path} holds no weights: pass the .h5 file the Keras model was saved to.')
    return tensors


def _damaged(path: Path, error: BaseException, kind: str = 'PyTorch checkpoint') -> ConversionError:
    return ConversionError(
        f'{path} is not a readable {kind} ({type(error).__name__}: {_first_line(error)}): it is truncated or '
        f'damaged. Download it again and compare its sha256 with the one the source publishes.')


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else 'no detail'


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
