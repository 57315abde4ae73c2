"""Training recipes: config composition, the Accelerate + timm loop, checkpoints, logs and the export folder.

`recipes/train.py` is a thin front end to `main`; `load_config` + `train` are the same from Python.
"""
from .config import DEFAULTS, ConfigError, load_config
from .loop import NonFiniteLossError, TrainingInterrupted, train
from .main import main
from .mixup import LabelPreservingMixup

__all__ = ['DEFAULTS', 'ConfigError', 'LabelPreservingMixup', 'NonFiniteLossError', 'TrainingInterrupted',
           'load_config', 'main', 'train']
