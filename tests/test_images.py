"""Image files to RGB for `cifar-timm predict`: every PIL mode at its right brightness, transparency on white,
impossible pixel values and decompression bombs refused. Real files written with Pillow (and one hand-made PNG
header), read back through `cifar_timm.images.open_rgb`."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cifar_timm.images import ImageReadError, open_rgb, to_rgb


def saved(tmp_path, image: Image.Image, name: str) -> str:
    path = tmp_path / name
    image.save(path)
    return str(path)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header claiming width x height 8-bit grey pixels, with no pixel data: Pillow sees the size at open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    header = chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
    return b'\x89PNG\r\n\x1a\n' + header + chunk(b'IEND', b'')


@pytest.mark.parametrize('name, image, rgb', [
    # 16-bit grey: PIL's own convert('RGB') clips 32896 to 255 (white); it is mid grey
    ('grey16.png', Image.fromarray(np.full((4, 4), 32896, np.uint16)), (128, 128, 128)),
    ('grey16.tif', Image.fromarray(np.full((4, 4), 65535, np.uint16)), (255, 255, 255)),
    ('int32.tif', Image.fromarray(np.full((4, 4), 257 * 64, np.int32)), (64, 64, 64)),  # mode I: 16-bit levels
    ('float01.tif', Image.fromarray(np.full((4, 4), 0.5, np.float32)), (128, 128, 128)),  # mode F in 0-1
    ('float255.tif', Image.fromarray(np.full((4, 4), 200.0, np.float32)), (200, 200, 200)),  # mode F in 0-255
    ('rgba.png', Image.new('RGBA', (4, 4), (255, 0, 0, 0)), (255, 255, 255)),  # transparent: the white behind
    ('half.png', Image.new('RGBA', (4, 4), (0, 0, 255, 128)), (127, 127, 255)),
    ('la.png', Image.new('LA', (4, 4), (0, 0)), (255, 255, 255)),
    ('grey8.png', Image.new('L', (4, 4), 77), (77, 77, 77)),
    ('bilevel.png', Image.new('1', (4, 4), 1), (255, 255, 255)),
    ('cmyk.jpg', Image.new('CMYK', (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
])
def test_modes_become_rgb_at_their_brightness(tmp_path, name, image, rgb):
    path = saved(tmp_path, image, name)
    converted = open_rgb(path)
    assert converted.mode == 'RGB' and converted.size == (4, 4)
    assert np.abs(np.asarray(converted, dtype=int) - rgb).max() <= 1, converted.getpixel((0, 0))


def test_palette_images_keep_their_colours_and_transparency(tmp_path):
    palette = Image.new('P', (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert open_rgb(saved(tmp_path, palette, 'p.png')).getpixel((0, 0)) == (10, 20, 30)
    palette.info['transparency'] = 1
    assert open_rgb(saved(tmp_path, palette, 'pt.png')).getpixel((0, 0)) == (255, 255, 255)
    pa = Image.new('PA', (4, 4), (1, 0))  # no file format stores PA: converted in memory
    assert to_rgb(pa).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize('name, image', [
    ('negative.tif', Image.fromarray(np.full((4, 4), -5, np.int32))),
    ('wide.tif', Image.fromarray(np.full((4, 4), 70000, np.int32))),
    ('nan.tif', Image.fromarray(np.full((4, 4), np.nan, np.float32))),
    ('big_float.tif', Image.fromarray(np.full((4, 4), 1e4, np.float32))),
])
def test_pixel_values_that_are_no_grey_level_are_refused(tmp_path, name, image):
    path = saved(tmp_path, image, name)
    with pytest.raises(ImageReadError, match=f'{path}: mode (I|F) pixels must lie in'):
        open_rgb(path)


@pytest.mark.parametrize('width, height', [(20000, 20000), (10000, 10000)])  # past twice Pillow's limit, and past it
def test_decompression_bomb_is_refused_before_decoding(tmp_path, width, height):
    path = tmp_path / 'bomb.png'
    path.write_bytes(png_declaring(width, height))
    with pytest.raises(ImageReadError, match=f'{path} is refused as a possible decompression bomb'):
        open_rgb(str(path))
