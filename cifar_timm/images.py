"""Image files as the 8-bit RGB a CIFAR model takes, whatever their PIL mode, or an error that says why not.

PIL's `convert('RGB')` clips wider pixels instead of scaling them (a mid-grey 16-bit PNG becomes white) and drops
transparency onto whatever colour the hidden pixels hold. Here:
  * 16-bit grey (`I;16*`, and `I`, which is how Pillow opens 16-bit files) is scaled 0-65535 -> 0-255;
  * 32-bit float grey (`F`) is taken as 0-1 when all its values are, else as 0-255;
  * values outside those ranges, NaN or inf are refused rather than guessed;
  * transparency (LA, La, PA, RGBA, RGBa, P or L/RGB with a transparent colour) is composited on white, the page
    colour such images are usually drawn for;
  * a file declaring more than Pillow's decompression-bomb limit of pixels is refused before it is decoded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CifarTimmError

BACKGROUND = (255, 255, 255)  # transparent pixels become white
_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


class ImageReadError(CifarTimmError):
    """An image file that cannot be read as RGB."""


def open_rgb(path: str | Path) -> Image.Image:
    """The image at `path` as 8-bit RGB (see the module docstring for how each mode becomes RGB)."""
    if not Path(path).is_file():
        raise ImageReadError(f'{path} does not exist or is not a file: pass the path of a PNG or JPEG image')
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; refuse the whole range before decoding anything
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return to_rgb(image, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f'{path} is refused as a possible decompression bomb ({e}); nothing was decoded. '
                             f'CIFAR models see 32x32 pixels: shrink the image below {Image.MAX_IMAGE_PIXELS:,} '
                             f'pixels first') from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageReadError(f'{path} is not a readable image ({e}): pass a PNG or JPEG file') from e


def to_rgb(image: Image.Image, path: str | Path = 'the image') -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(np.asarray(image, dtype=np.float64) / 257, image.mode, '0-65535', path)
    if image.mode == 'F':
        pixels = np.asarray(image, dtype=np.float64)
        unit_range = np.isfinite(pixels).all() and 0 <= pixels.min() and pixels.max() <= 1
        return _grey_to_rgb(pixels * 255 if unit_range else pixels, 'F', '0-1 or 0-255', path)
    if 'transparency' in image.info or {'A', 'a'} & set(image.getbands()):
        rgba = (image.convert('LA') if image.mode == 'La' else image).convert('RGBA')  # PIL has no La -> RGBA
        return Image.alpha_composite(Image.new('RGBA', image.size, BACKGROUND + (255,)), rgba).convert('RGB')
    return image.convert('RGB')


def _grey_to_rgb(scaled: np.ndarray, mode: str, full_range: str, path) -> Image.Image:
    """`scaled`: grey levels mapped to 0-255; refused when any falls outside (or is not a number)."""
    if not (np.isfinite(scaled).all() and 0 <= scaled.min() and scaled.max() <= 255):
        raise ImageReadError(f'{path}: mode {mode} pixels must lie in {full_range} to be read as grey levels, but '
                             f'some are outside it (or NaN/inf); convert the image to 8 or 16 bits per channel first')
    return Image.fromarray(np.round(scaled).astype(np.uint8)).convert('RGB')
