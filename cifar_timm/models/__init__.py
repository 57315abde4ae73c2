"""Every cifar-timm architecture family; importing this package registers them all with timm.

Module names carry a `cifar` prefix because timm keys its registry by the last module-name component and
already owns `resnet`, `vgg` and `densenet`.
"""
from . import cifar_resnet, cifar_vgg, cifar_hybrid_resnet, cifar_densenet, cifarnet  # noqa: F401
from ._base import CifarClassifier
from ._common import SOURCE_RESULTS, cifar_cfg, cifar_default_cfgs, create_cifar_model

FAMILY_MODULES = ('cifar_resnet', 'cifar_vgg', 'cifar_hybrid_resnet', 'cifar_densenet', 'cifarnet')

__all__ = [
    'CifarClassifier', 'FAMILY_MODULES', 'SOURCE_RESULTS', 'cifar_cfg', 'cifar_default_cfgs', 'create_cifar_model']
