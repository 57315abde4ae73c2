"""cifar-timm: CIFAR-10 networks registered as timm models.

Importing this package registers every architecture with timm, so `timm.create_model('resnet20')` works.
"""
import timm as _timm

from ._timm_version import check_timm_version as _check_timm_version

_check_timm_version(_timm.__version__)

from . import models  # noqa: E402,F401  (registers the architectures)
from .constants import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD  # noqa: E402

__version__ = '0.1.0'
__all__ = ['CIFAR10_CLASSES', 'CIFAR10_MEAN', 'CIFAR10_STD', 'list_models']


def list_models(pretrained: bool = False) -> list[str]:
    """Names of the architectures cifar-timm registers (with `pretrained`, the `name.tag`s that have weights)."""
    import timm
    return timm.list_models(module=models.FAMILY_MODULES, pretrained=pretrained)
