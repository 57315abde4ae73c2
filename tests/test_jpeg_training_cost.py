"""recipes/experiments/jpeg_training_cost.py: the controlled pair of training sets (the same exact training images
as they are and after the shared copy's JPEG round trip) and the paired scoring of runs on the validation split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import cifar_timm  # noqa: F401  (registers resnet20)
from experiment_scripts import load_experiment, png_tree


@pytest.fixture(scope='module')
def experiment():
    return load_experiment('jpeg_training_cost')


def test_build_writes_the_same_images_exact_and_jpeg(experiment, cifar_root, tmp_path, capsys):
    out = tmp_path / 'trees'
    experiment.main(['build', '--data-dir', str(cifar_root), '--out', str(out), '--limit', '40',
                     '--mixed-share', '0.25', '--oversample', '3'])
    exact, jpeg = png_tree(out / 'exact' / 'train'), png_tree(out / 'jpeg' / 'train')
    assert len(exact) == 40 and exact.keys() == jpeg.keys()  # the same images, by class and training-set index
    psnr = [10 * np.log10(255 ** 2 / np.mean((exact[k].astype(float) - jpeg[k]) ** 2)) for k in exact]
    assert 25 < np.median(psnr) < 40  # the shared copy's lossy images sit near 30 dB
    assert len(png_tree(out / 'val_exact')) == 40 and len(png_tree(out / 'val_jpeg')) == 40
    mixed, oversampled = png_tree(out / 'mixed' / 'train'), png_tree(out / 'mixed_x3' / 'train')
    kept_exact = [k for k in mixed if np.array_equal(mixed[k], exact[k])]
    assert len(mixed) == 40 and len(kept_exact) == 10
    assert len(oversampled) == 40 + 2 * 10  # each exact image twice more
    assert all(np.array_equal(oversampled[k.replace('.png', '_2.png')], exact[k]) for k in kept_exact)
    assert 'mixed_x3/train: 10 exact images x3, 30 JPEG' in capsys.readouterr().out


def test_score_compares_runs_on_the_same_validation_images(experiment, cifar_root, tmp_path, capsys):
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        run = tmp_path / f'run{seed}'
        (run / 'export').mkdir(parents=True)
        save_file(timm.create_model('resnet20').state_dict(), run / 'export' / 'model.safetensors')
        (run / 'export' / 'config.json').write_text(json.dumps({'architecture': 'resnet20', 'num_classes': 10}))
        runs.append(str(run))
    experiment.main(['score', '--data-dir', str(cifar_root), '--val-size', '600', '--runs', *runs])
    out = capsys.readouterr().out
    assert 'validation, exact images (' in out and 'validation, JPEG-decoded images (' in out
    assert 'validation, all images (600)' in out
    assert out.count('run1: ') == 3 and out.count('minus run0: ') == 3


def test_score_takes_a_hub_folder_and_scores_jpeg_inputs_against_the_same_weights(experiment, cifar_root, tmp_path,
                                                                                  capsys):
    hub = tmp_path / 'resnet20.x_c10'  # a published folder: the weights at its top, no export/
    hub.mkdir()
    torch.manual_seed(0)
    save_file(timm.create_model('resnet20').state_dict(), hub / 'model.safetensors')
    (hub / 'config.json').write_text(json.dumps({'architecture': 'resnet20', 'num_classes': 10}))
    experiment.main(['score', '--data-dir', str(cifar_root), '--val-size', '300', '--runs', str(hub),
                     '--test-jpeg-quality', '75', '90'])
    out = capsys.readouterr().out
    for quality in (75, 90):
        assert out.count(f'resnet20.x_c10, inputs JPEG q{quality}: ') == 3
    assert out.count('| minus resnet20.x_c10: ') == 6  # each quality against the same weights on the images as they are


def test_score_ensembles_every_combination_by_their_mean_logits(experiment, cifar_root, tmp_path, capsys):
    # three runs: the same weights twice (their ensemble is that net, +0.00 against it) and another net
    torch.manual_seed(0)
    nets = [timm.create_model('resnet20').state_dict()] * 2 + [timm.create_model('resnet20').state_dict()]
    runs = []
    for i, state in enumerate(nets):
        run = tmp_path / f'run{i}'
        (run / 'export').mkdir(parents=True)
        save_file(state, run / 'export' / 'model.safetensors')
        (run / 'export' / 'config.json').write_text(json.dumps({'architecture': 'resnet20', 'num_classes': 10}))
        runs.append(str(run))
    experiment.main(['score', '--data-dir', str(cifar_root), '--val-size', '300', '--runs', *runs, '--ensembles'])
    out = capsys.readouterr().out
    for members in ('run0 + run1', 'run0 + run2', 'run1 + run2', 'run0 + run1 + run2'):
        assert out.count(f'mean logits of {members}: ') == 3  # exact, JPEG-decoded and all images
    same = [line for line in out.splitlines() if 'mean logits of run0 + run1: ' in line]
    assert all(line.endswith('| minus run0: +0.00 points [+0.00, +0.00]') for line in same)


def test_score_names_a_folder_without_weights(experiment, cifar_root, tmp_path):
    with pytest.raises(SystemExit, match='holds no exported weights: pass a run folder with export/'):
        experiment.main(['score', '--data-dir', str(cifar_root), '--val-size', '300', '--runs', str(tmp_path)])


def test_paired_difference_of_identical_runs_is_zero(experiment):
    hits = torch.tensor([True, False, True, True])
    assert experiment.paired_difference(hits, hits) == (0.0, 0.0, 0.0)
    assert experiment.paired_difference(hits, torch.ones(4, dtype=torch.bool))[0] == 25.0


def test_a_copy_without_provenance_is_refused_by_name(experiment, tmp_path):
    """The official download is exact throughout: there is nothing to measure, and the script says so."""
    from cifar_timm.constants import CIFAR10_CLASSES
    import pickle
    root = tmp_path / 'official' / 'cifar-10-batches-py'
    root.mkdir(parents=True)
    for name in [f'data_batch_{i}' for i in range(1, 6)]:
        batch = {'data': np.zeros((10, 3072), np.uint8), 'labels': list(range(10)), 'batch_label': name,
                 'filenames': [f'{i}.png' for i in range(10)]}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / 'batches.meta').write_bytes(pickle.dumps({'label_names': list(CIFAR10_CLASSES)}))
    with pytest.raises(SystemExit, match='no provenance.npz: every image is exact'):
        experiment.main(['build', '--data-dir', str(tmp_path / 'official'), '--out', str(tmp_path / 'out'),
                         '--val-size', '10'])
