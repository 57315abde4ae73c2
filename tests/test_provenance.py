"""The exact/JPEG provenance of the shared CIFAR-10 copy: the mask reader, the JPEG round trip, and validation
reported on the two parts apart (the JPEG gap of issue 13)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.data import CifarDataError, load_cifar10
from cifar_timm.data.provenance import PROVENANCE_FILE, exact_mask, jpeg_round_trip
from cifar_timm.training import load_config, train

REPO = Path(__file__).resolve().parents[1]


def test_no_provenance_file_means_all_exact(tmp_path):
    assert exact_mask(tmp_path, 'train', 50000) is None


def test_shared_copy_marks_its_exact_images(cifar_root):
    if not (cifar_root / PROVENANCE_FILE).is_file():
        pytest.skip(f'{cifar_root} has no {PROVENANCE_FILE} (not built from ../shared/cifar10)')
    train_mask = exact_mask(cifar_root, 'train', 50000)
    test_mask = exact_mask(cifar_root, 'test', 10000)
    assert train_mask.dtype == torch.bool and int(train_mask.sum()) == 8068 and bool(train_mask[:4000].all())
    assert int(test_mask.sum()) == 1017 and bool(test_mask[:1017].all())


def test_bad_provenance_files_get_clear_errors(tmp_path):
    np.savez(tmp_path / PROVENANCE_FILE, train_exact=np.ones(10, dtype=bool))
    with pytest.raises(CifarDataError, match='marks .10,. images but the train split has 50000'):
        exact_mask(tmp_path, 'train', 50000)
    with pytest.raises(CifarDataError, match="no readable boolean 'test_exact'"):
        exact_mask(tmp_path, 'test', 10000)


def test_jpeg_round_trip_degrades_like_the_shared_copy(cifar_root):
    images = load_cifar10(cifar_root, 'test', verify_md5=False).images[:64]
    out = jpeg_round_trip(images)
    assert out.shape == images.shape and out.dtype == torch.uint8 and not torch.equal(out, images)
    mse = (out.double() - images.double()).pow(2).mean().item()
    psnr = 10 * np.log10(255 ** 2 / mse)
    assert 25 < psnr < 40  # the shared copy's README: about 30 dB


def test_validation_reports_exact_and_jpeg_parts(cifar_root, tmp_path):
    if not (cifar_root / PROVENANCE_FILE).is_file():
        pytest.skip(f'{cifar_root} has no {PROVENANCE_FILE} (not built from ../shared/cifar10)')
    out = tmp_path / 'run'
    config = load_config(REPO / 'recipes/configs/resnet20.yaml', [
        f'data.dir={cifar_root}', 'data.verify_md5=false', 'data.limit=64', 'data.val_limit=1000',
        'data.test_limit=32', 'batch_size=32', 'epochs=1', f'output={out}', 'log.progress=false',
        'log.tensorboard=false'])
    results = train(config)
    row = next(csv.DictReader((out / 'metrics.csv').open()))
    exact, jpeg, whole = (float(row[k]) for k in ('val_top1_exact', 'val_top1_jpeg', 'val_top1'))
    n_exact = results['n_val_exact']
    assert 0 < n_exact < 1000  # the sorted validation indices reach past the exact prefix 0-3999
    # the whole split's top-1 is the parts' weighted mean
    assert whole == pytest.approx((exact * n_exact + jpeg * (1000 - n_exact)) / 1000, abs=1e-6)
    written = json.loads((out / 'export' / 'results.json').read_text())
    assert written['top1_val_exact'] == pytest.approx(exact) and written['top1_val_jpeg'] == pytest.approx(jpeg)
    assert 0 <= written['top1_val_exact_as_jpeg'] <= 100


def test_copy_without_provenance_reports_one_validation_number(cifar_root, tmp_path):
    root = tmp_path / 'official-layout'
    shutil.copytree(cifar_root / 'cifar-10-batches-py', root / 'cifar-10-batches-py')
    out = tmp_path / 'run'
    config = load_config(REPO / 'recipes/configs/resnet20.yaml', [
        f'data.dir={root}', 'data.verify_md5=false', 'data.limit=32', 'data.val_limit=32', 'data.test_limit=32',
        'batch_size=32', 'epochs=1', f'output={out}', 'log.progress=false', 'log.tensorboard=false'])
    results = train(config)
    row = next(csv.DictReader((out / 'metrics.csv').open()))
    assert row['val_top1'] and row['val_top1_exact'] == '' and row['val_top1_jpeg'] == ''
    assert results['top1_val_exact'] is None and 'top1_val_exact_as_jpeg' not in results
