"""CIFAR-10 data for cifar-timm: reading the standard files (or a user's ImageFolder tree), the train/validation
split, the device-resident training loader and the conventional torchvision-transforms loader."""
from .cifar10 import CifarDataError, CifarSplit, download_cifar10, load_cifar10, verify_files
from .gpu_loader import GpuCifarLoader
from .image_folder import ImageFolderError, ImageFolderSplit, load_image_folder, scan_image_folder
from .splits import parse_index_slice, train_val_indices
from .torchvision_loader import TransformCifarDataset, cifar_transforms, torchvision_loader

__all__ = [
    'CifarDataError', 'CifarSplit', 'GpuCifarLoader', 'ImageFolderError', 'ImageFolderSplit', 'TransformCifarDataset',
    'cifar_transforms', 'download_cifar10', 'load_cifar10', 'load_image_folder', 'parse_index_slice',
    'scan_image_folder', 'torchvision_loader', 'train_val_indices', 'verify_files',
]
