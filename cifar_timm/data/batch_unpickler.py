"""Read a CIFAR-10 batch pickle without letting it run code.

A pickle may name any importable callable and have it called while loading (torchvision's reader, `pickle.load`,
runs whatever a planted `data_batch_1` asks for). The CIFAR-10 format holds only dicts, lists, str, bytes, ints
and one numpy uint8 array per batch, so this unpickler resolves exactly the globals those need and refuses every
other one before anything is called. NumPy 1.x pickles name `numpy.core.*`, NumPy 2.x `numpy._core.*`; both
spellings map to the running NumPy's own functions, so either numpy reads files written by the other.
"""
from __future__ import annotations

import codecs
import pickle
from typing import Any, BinaryIO

import numpy as np

_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # the array constructor of pickle protocols 2-4
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # ... and of protocol 5
_ALLOWED = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy._core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy.core.numeric', '_frombuffer'): _FROMBUFFER,
    ('numpy._core.numeric', '_frombuffer'): _FROMBUFFER,
    ('_codecs', 'encode'): codecs.encode,  # how protocol 2 stores bytes written by Python 3
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for something a CIFAR-10 batch never holds."""


class CifarBatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[module, name]
        except KeyError:
            raise RefusedGlobal(f'it asks for {module}.{name}, which a CIFAR-10 batch never holds (only dicts, lists, '
                                f'str, bytes, ints and numpy arrays); refused before running anything') from None


def load_batch(file: BinaryIO) -> Any:
    """The object in `file`; `encoding='latin1'` reads the Python 2 strings of the official release, as torchvision."""
    return CifarBatchUnpickler(file, encoding='latin1').load()
