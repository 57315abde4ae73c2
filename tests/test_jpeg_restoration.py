"""recipes/experiments/jpeg_restoration.py: the shared copy's own JPEG decodes of its exact training images, and the
same decodes restored by a restorer trained on the other half of the pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_timm.data import load_cifar10
from cifar_timm.data.provenance import exact_mask
from experiment_scripts import load_experiment, png_tree


@pytest.fixture(scope='module')
def experiment():
    return load_experiment('jpeg_restoration')


def test_decodes_match_the_built_copy_where_it_kept_the_jpeg(experiment, cifar_root, shared_cifar10_dir):
    """Where build.py kept the JPEG decode (the images that are not exact), the script's decode is the same pixels."""
    train = load_cifar10(cifar_root, 'train', verify_md5=False)
    lossy = (~exact_mask(cifar_root, 'train', len(train.labels))).nonzero().squeeze(1)[:20]
    assert torch.equal(experiment.shared_jpeg_decodes(shared_cifar10_dir, lossy), train.images[lossy])


def test_build_writes_decoded_and_restored_trees_of_the_same_images(experiment, cifar_root, shared_cifar10_dir,
                                                                     tmp_path, capsys):
    out = tmp_path / 'trees'
    experiment.main(['--data-dir', str(cifar_root), '--shared-dir', str(shared_cifar10_dir), '--out', str(out),
                     '--limit', '40', '--epochs', '1', '--channels', '8', '--depth', '1'])
    decoded, restored = png_tree(out / 'shared_jpeg' / 'train'), png_tree(out / 'restored' / 'train')
    exact = png_tree(out / 'val_exact')
    assert len(decoded) == 40 and decoded.keys() == restored.keys() and len(exact) == 40
    assert not any(np.array_equal(decoded[k], restored[k]) for k in decoded)  # every image went through a restorer
    train = load_cifar10(cifar_root, 'train', verify_md5=False)
    for key, image in decoded.items():  # the exact image's JPEG decode: close to its exact pixels, not equal
        original = train.images[int(Path(key).stem)].permute(1, 2, 0).numpy()
        assert 22 < 10 * np.log10(255 ** 2 / np.mean((image.astype(float) - original) ** 2)) < 45
    printed = capsys.readouterr().out
    assert printed.count('trained on 20 pairs') == 2 and 'of the 40 exact validation images' in printed


def test_a_folder_without_the_jpeg_streams_is_named(experiment, cifar_root, tmp_path):
    with pytest.raises(SystemExit, match='lacks jpeg_header.bin: pass the folder'):
        experiment.main(['--data-dir', str(cifar_root), '--shared-dir', str(tmp_path), '--out', str(tmp_path / 'o'),
                         '--limit', '4'])


def test_restorer_learns_to_undo_a_corruption_of_its_pairs(experiment):
    """Smooth images with noise on top: a restorer fitted to the pairs brings them closer to the smooth originals."""
    torch.manual_seed(0)
    coarse = torch.rand(16, 3, 4, 4) * 255
    exact = torch.nn.functional.interpolate(coarse, size=32, mode='bilinear').round().byte()
    decoded = (exact.float() + 12 * torch.randn(exact.shape)).clamp(0, 255).round().byte()
    net = experiment.train_restorer(decoded, exact, epochs=300, seed=0, channels=16, depth=2, batch_size=16)
    assert experiment.psnr(experiment.restore(net, decoded), exact) > experiment.psnr(decoded, exact) + 3
