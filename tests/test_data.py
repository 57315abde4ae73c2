"""CIFAR-10 reading, the validation split and the device-resident loader (on CPU), checked against the raw
pickles and against plain torch re-computations of each augmentation."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cifar_timm.constants import CIFAR10_MEAN, CIFAR10_STD
from cifar_timm.data import (
    CifarDataError, GpuCifarLoader, load_cifar10, torchvision_loader, train_val_indices)
from cifar_timm.data import cifar10 as cifar10_module
from cifar_timm.errors import CifarTimmError

REPO = Path(__file__).resolve().parents[1]
N_SMALL = 192  # images used by the loader tests: enough for several batches, cheap on 2 shared cores


@pytest.fixture(scope='module')
def train_split(cifar_root):
    return load_cifar10(cifar_root, 'train', verify_md5=False)


@pytest.fixture(scope='module')
def small(train_split):
    return train_split.images[:N_SMALL], train_split.labels[:N_SMALL]


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR10_MEAN)[:, None, None]
    std = torch.tensor(CIFAR10_STD)[:, None, None]
    return (images_uint8.float() / 255 - mean) / std


def epoch_batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def cat(batches):
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# --- reading -------------------------------------------------------------------------------------------------------

def test_loaded_arrays_match_the_pickles(cifar_root, train_split):
    folder = cifar_root / 'cifar-10-batches-py'
    test_split = load_cifar10(cifar_root, 'test', verify_md5=False)
    assert train_split.images.shape == (50000, 3, 32, 32) and train_split.images.dtype == torch.uint8
    assert test_split.images.shape == (10000, 3, 32, 32) and test_split.labels.dtype == torch.int64
    for name, split, offset in (('data_batch_3', train_split, 20000), ('test_batch', test_split, 0)):
        with open(folder / name, 'rb') as f:
            raw = pickle.load(f, encoding='latin1')
        images = torch.from_numpy(raw['data']).reshape(-1, 3, 32, 32)
        assert torch.equal(split.images[offset:offset + 10000], images)
        assert split.labels[offset:offset + 10000].tolist() == raw['labels']


def test_md5_check_is_on_by_default_and_names_the_switch(cifar_root):
    with pytest.raises(CifarDataError, match=r'verify_md5=False.*--no-verify-md5'):
        load_cifar10(cifar_root, 'test')
    assert len(load_cifar10(cifar_root, 'test', verify_md5=False)) == 10000


def test_missing_dataset_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(CifarDataError, match=r'(?s)no CIFAR-10 at .*cifar-10-batches-py.*download=True.*build\.py'):
        load_cifar10(tmp_path / 'nowhere', 'train')


@pytest.mark.parametrize('content, says', [
    (b'\x80\x04\x95', 'incomplete or damaged'),  # a truncated pickle
    (b'cnumpy._not_in_this_numpy\nthing\n.', 'numpy._not_in_this_numpy.thing, which a CIFAR-10 batch never holds'),
])
def test_unreadable_batch_says_why_and_what_to_do(tmp_path, content, says):
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    (folder / 'test_batch').write_bytes(content)
    with pytest.raises(CifarDataError, match=f'test_batch.*{says}'):
        load_cifar10(tmp_path, 'test', verify_md5=False)


class _ShellPayload:
    """What an attacker pickles into a batch file: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def write_batch(root, name: str, batch, protocol: int = 2):
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder / name


def test_a_batch_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = write_batch(tmp_path, 'data_batch_1', {'data': _ShellPayload(marker), 'labels': [0]})
    with pytest.raises(CifarDataError, match=f'refused CIFAR-10 batch {path}: it asks for posix.system'):
        load_cifar10(tmp_path, 'train', verify_md5=False)
    assert not marker.exists()


@pytest.mark.parametrize('protocol, module', [
    (2, b'numpy.core.multiarray'),  # numpy 1.x, as the official release (Python 2 pickles)
    (2, b'numpy._core.multiarray'),  # numpy 2.x
    (4, None),  # the running numpy, as the shared copy is built
    (5, None),  # numpy's out-of-band capable protocol: _frombuffer instead of _reconstruct
])
def test_batches_pickled_by_either_numpy_load(tmp_path, protocol, module):
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    data = pickle.dumps({'batch_label': 'testing batch 1 of 1', 'labels': [3, 9], 'data': images,
                         'filenames': [b'a.png', b'b.png']}, protocol=protocol)
    if module is not None:
        data = re.sub(rb'numpy\.(_)?core\.multiarray', module, data)
        assert module + b'\n_reconstruct' in data
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    (folder / 'test_batch').write_bytes(data)
    split = load_cifar10(tmp_path, 'test', verify_md5=False)
    assert torch.equal(split.images, torch.from_numpy(images).reshape(2, 3, 32, 32))
    assert split.labels.tolist() == [3, 9]


def test_labels_outside_the_ten_classes_are_refused_before_training(tmp_path, cifar_root):
    from cifar_timm.training import load_config, train
    images = np.zeros((2, 3072), dtype=np.uint8)
    path = write_batch(tmp_path, 'data_batch_1', {'data': images, 'labels': [3, 12]})
    with pytest.raises(CifarDataError, match=f'{path} holds labels 12 outside 0-9'):
        load_cifar10(tmp_path, 'train', verify_md5=False)
    output = tmp_path / 'run'
    config = load_config(REPO / 'recipes' / 'configs' / 'resnet20.yaml',
                         [f'data.dir={tmp_path}', 'data.verify_md5=false', f'output={output}'])
    with pytest.raises(CifarDataError, match='outside 0-9'):
        train(config)
    assert not output.exists()  # no config.yaml, metrics.csv or tb/ left behind


def test_training_and_eval_refuse_a_batch_that_would_run_code(tmp_path, capsys):
    from cifar_timm.cli import main
    from cifar_timm.training import load_config, train
    marker = tmp_path / 'pwned'
    write_batch(tmp_path, 'data_batch_1', {'data': _ShellPayload(marker), 'labels': [0]})
    assert main(['eval', 'resnet20', '--data-dir', str(tmp_path), '--split', 'train', '--no-verify-md5']) == 2
    err = capsys.readouterr().err
    assert 'refused CIFAR-10 batch' in err and 'Traceback' not in err
    output = tmp_path / 'run'
    config = load_config(REPO / 'recipes' / 'configs' / 'resnet20.yaml',
                         [f'data.dir={tmp_path}', 'data.verify_md5=false', f'output={output}'])
    with pytest.raises(CifarDataError, match='refused CIFAR-10 batch'):
        train(config)
    assert not marker.exists() and not output.exists()


def test_download_offline_fails_fast_with_the_url(tmp_path, monkeypatch):
    # Port 9 on the loopback refuses connections: the same path a machine without internet takes, without waiting.
    url = 'http://127.0.0.1:9/cifar-10-python.tar.gz'
    monkeypatch.setattr(cifar10_module, 'CIFAR10_URL', url)
    with pytest.raises(CifarDataError, match=r'could not download CIFAR-10 from http://127\.0\.0\.1:9/'):
        load_cifar10(tmp_path, 'train', download=True)


def test_unknown_split_is_rejected(cifar_root):
    with pytest.raises(CifarDataError, match='unknown split'):
        load_cifar10(cifar_root, 'validation', verify_md5=False)


def test_train_val_indices_are_deterministic_disjoint_and_complete():
    train_idx, val_idx = train_val_indices()
    assert len(train_idx) == 45000 and len(val_idx) == 5000
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(50000))
    again = train_val_indices()
    assert torch.equal(train_idx, again[0]) and torch.equal(val_idx, again[1])
    assert not torch.equal(val_idx, train_val_indices(seed=1)[1])
    all_train, empty = train_val_indices(val_size=0)
    assert len(all_train) == 50000 and len(empty) == 0


# --- GPU-resident loader (run on CPU) --------------------------------------------------------------------------------

def test_batches_have_shape_dtype_range_and_memory_format(small):
    images, labels = small
    lo = min((0 - m) / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD))
    hi = max((1 - m) / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD))
    loader = GpuCifarLoader(images, labels, 64, cutout=8)
    batches = epoch_batches(loader)
    assert len(batches) == len(loader) == 3
    for x, y in batches:
        assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
        assert y.shape == (64,) and y.dtype == torch.int64
        assert lo - 1e-5 <= x.min() and x.max() <= hi + 1e-5
    x, _ = next(iter(GpuCifarLoader(images, labels, 64, dtype=torch.bfloat16, channels_last=True)))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_unaugmented_batches_are_the_images_with_their_labels(small):
    images, labels = small
    reference = normalise(images)
    x, y = cat(epoch_batches(GpuCifarLoader(images, labels, 64, pad=0, flip=False)))
    # Each batch image is exactly one dataset image (found by distance), and its label is that image's label.
    nearest = torch.cdist(x.flatten(1), reference.flatten(1)).argmin(dim=1)
    assert torch.allclose(x, reference[nearest], atol=1e-5)
    assert torch.equal(y, labels[nearest])
    assert sorted(nearest.tolist()) == list(range(N_SMALL))  # a permutation: every image once


def test_flip_changes_nothing_but_the_direction(small):
    images, labels = small
    plain, _ = cat(epoch_batches(GpuCifarLoader(images, labels, 64, flip=False, seed=3)))
    flipped, _ = cat(epoch_batches(GpuCifarLoader(images, labels, 64, flip=True, seed=3)))
    is_flipped = ~torch.isclose(plain, flipped).flatten(1).all(dim=1)
    assert 0.3 < is_flipped.float().mean() < 0.7
    # Flipping a flipped image back gives the unflipped crop of the same position.
    assert torch.equal(flipped[is_flipped].flip(-1), plain[is_flipped])
    assert torch.equal(flipped[~is_flipped], plain[~is_flipped])


@pytest.mark.parametrize('pad_mode', ['constant', 'reflect'])
def test_crops_are_windows_of_the_padded_image(small, pad_mode):
    images, labels = small
    # Same seed: the order is drawn before the crops, so the pad=0 loader names the source image of each position.
    source, source_y = cat(epoch_batches(GpuCifarLoader(images, labels, 64, pad=0, flip=False, seed=5)))
    cropped, cropped_y = cat(epoch_batches(GpuCifarLoader(images, labels, 64, pad_mode=pad_mode, flip=False, seed=5)))
    assert torch.equal(source_y, cropped_y)
    uint8_source = images[torch.cdist(source.flatten(1), normalise(images).flatten(1)).argmin(dim=1)]
    if pad_mode == 'constant':  # zero (black) pixels, as torchvision's RandomCrop(padding=4)
        padded = normalise(F.pad(uint8_source, (4, 4, 4, 4)))
    else:  # torch's reflect mode
        padded = normalise(F.pad(uint8_source.float(), (4, 4, 4, 4), mode='reflect'))
    windows = padded.unfold(2, 32, 1).unfold(3, 32, 1)  # (n, 3, 9, 9, 32, 32): every crop offset
    error = (windows - cropped[:, :, None, None]).abs().amax(dim=(1, 4, 5))  # (n, 9, 9)
    best = error.flatten(1).min(dim=1)
    assert best.values.max() < 1e-5
    offsets = set(best.indices.tolist())
    assert len(offsets) > 20  # the offsets vary
    # Offset (4, 4) is the unpadded original.
    centre = best.indices == 4 * 9 + 4
    assert torch.allclose(cropped[centre], source[centre], atol=1e-6)


def test_cutout_zeroes_one_square_after_normalisation(small):
    images, labels = small
    plain, _ = cat(epoch_batches(GpuCifarLoader(images, labels, 64, seed=7)))
    cut, _ = cat(epoch_batches(GpuCifarLoader(images, labels, 64, seed=7, cutout=8)))
    changed = ~torch.isclose(plain, cut)
    assert (cut[changed] == 0).all()
    zero = (cut == 0).all(dim=1)  # (n, H, W): pixels set to the mean
    for mask in zero:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one filled rectangle


def test_one_seed_gives_identical_batches_and_epochs_differ(small):
    images, labels = small
    a = GpuCifarLoader(images, labels, 64, seed=11, cutout=8, pad_mode='reflect')
    b = GpuCifarLoader(images, labels, 64, seed=11, cutout=8, pad_mode='reflect')
    first_a, first_b = cat(epoch_batches(a)), cat(epoch_batches(b))
    assert torch.equal(first_a[0], first_b[0]) and torch.equal(first_a[1], first_b[1])
    assert a.epoch == 1  # a full pass advances the epoch
    second_a = cat(epoch_batches(a))
    assert not torch.equal(first_a[1], second_a[1])
    other_seed = cat(epoch_batches(GpuCifarLoader(images, labels, 64, seed=12)))
    assert not torch.equal(first_a[1], other_seed[1])


def test_rank_slices_concatenate_to_the_one_rank_batch(small):
    images, labels = small
    whole = epoch_batches(GpuCifarLoader(images, labels, 64, seed=2))
    ranks = [epoch_batches(GpuCifarLoader(images, labels, 64, seed=2, num_replicas=2, rank=r)) for r in (0, 1)]
    half_batches = epoch_batches(GpuCifarLoader(images, labels, 32, seed=2))
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x)
        assert torch.equal(torch.cat([ranks[0][step][1], ranks[1][step][1]]), y)
        # ...and a 2-rank step is two steps of half the batch on one rank (gradient accumulation 2).
        for r in (0, 1):
            assert torch.equal(ranks[r][step][0], half_batches[2 * step + r][0])
    with pytest.raises(CifarTimmError, match='not divisible'):
        GpuCifarLoader(images, labels, 63, num_replicas=2, rank=0)


def test_state_dict_resumes_mid_epoch_with_the_same_batches(small):
    images, labels = small
    loader = GpuCifarLoader(images, labels, 32, seed=4, cutout=4)
    loader.set_epoch(2)
    reference = epoch_batches(loader)
    loader.set_epoch(2)  # the pass above advanced to epoch 3; going back to 2 starts it at step 0
    it = iter(loader)
    for _ in range(2):
        next(it)
    state = loader.state_dict()
    assert state['epoch'] == 2 and state['step'] == 2
    resumed = GpuCifarLoader(images, labels, 32, seed=4, cutout=4)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop that calls set_epoch on resume still continues mid-epoch
    rest = epoch_batches(resumed)
    assert len(rest) == len(reference) - 2
    for (x, y), (rx, ry) in zip(rest, reference[2:]):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert resumed.state_dict()['epoch'] == 3 and resumed.state_dict()['step'] == 0
    with pytest.raises(CifarTimmError, match='batch_size'):
        GpuCifarLoader(images, labels, 64, seed=4).load_state_dict(state)


def test_eval_mode_is_ordered_unaugmented_and_keeps_the_last_batch(small):
    images, labels = small
    loader = GpuCifarLoader(images[:150], labels[:150], 64, train=False)
    batches = epoch_batches(loader)
    assert [len(y) for _, y in batches] == [64, 64, 22] and len(loader) == 3
    x, y = cat(batches)
    assert torch.allclose(x, normalise(images[:150]), atol=1e-5) and torch.equal(y, labels[:150])


def test_torchvision_loader_normalises_like_the_gpu_loader(small):
    images, labels = small
    x, y = next(iter(torchvision_loader(images, labels, 48, train=False, num_workers=0)))
    assert torch.allclose(x, normalise(images[:48]), atol=1e-5) and torch.equal(y, labels[:48])
    x, y = next(iter(torchvision_loader(images, labels, 48, train=True, num_workers=0, pad_mode='reflect')))
    assert x.shape == (48, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
