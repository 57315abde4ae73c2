"""What the tests of recipes/experiments/ share: the scripts loaded by path (they are not a package), and the
ImageFolder trees they write read back as arrays."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

EXPERIMENTS = Path(__file__).resolve().parents[1] / 'recipes' / 'experiments'


def load_experiment(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_tree(root: Path) -> dict[str, np.ndarray]:
    """`<class>/<file>.png` -> pixels, for every image of an ImageFolder tree."""
    return {f'{p.parent.name}/{p.name}': np.asarray(Image.open(p)) for p in sorted(root.glob('*/*.png'))}
