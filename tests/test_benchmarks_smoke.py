"""Quick CPU smoke runs of the benchmark scripts in benchmarks/ (a few steps, tiny batches, one small model), so
they keep working between the GPU sessions that run them for real. No timing is asserted: speed lives in
docs/benchmarks.md, measured by hand. The scripts run in-process through their `main(argv)`."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch

from cifar_timm.constants import EXACT_TEST_SLICE
from cifar_timm.data import load_cifar10
from cifar_timm.training.cpu import cpu_has_native_bf16

BENCHMARKS = Path(__file__).resolve().parents[1] / 'benchmarks'


@pytest.fixture
def bench(monkeypatch):
    """Import a script of benchmarks/ by name (they import each other, as when run from that folder)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


# A tiny run of the real ResNet20 recipe: 2 steps of batch 16 per epoch, small validation and test sets.
TINY = ['--max-steps', '2', '--workers', '1', 'batch_size=16']


def test_train_epoch_benchmark_runs_both_paths(bench, cifar_root, tmp_path):
    script = bench('bench_train_epoch')
    out = tmp_path / 'epoch.json'
    assert script.main(['--data-dir', str(cifar_root), '--no-verify-md5', '--epochs', '1', '--json', str(out),
                        *TINY]) == 0
    report = json.loads(out.read_text())
    assert set(report['paths']) == {'gpu', 'torchvision'}
    for loader, path in report['paths'].items():
        assert len(path['epoch_times_s']) == 1 and path['median_s'] > 0
        assert f'data.loader={loader}' in path['command'] and path['command'].startswith('python recipes/train.py')
    assert report['ratio_torchvision_over_gpu'] > 0


def test_time_to_accuracy_benchmark_writes_row_json_and_plot(bench, cifar_root, tmp_path, capsys):
    script = bench('bench_time_to_accuracy')
    output = tmp_path / 'tta'
    argv = ['--data-dir', str(cifar_root), '--no-verify-md5', '--output', str(output), '--torchvision-epochs', '1',
            *TINY, 'epochs=2', 'data.val_limit=32', 'data.test_limit=64']
    assert script.main(argv) == 0
    state = json.loads((output / 'bench_tta.json').read_text())
    summary = state['summary']
    assert summary['epochs'] == 2 and len(summary['curve']) == 2
    assert summary['ours']['gpu_minutes'] > 0 and summary['torchvision_extrapolated']['wall_s'] > 0
    assert (output / 'time_vs_accuracy.png').stat().st_size > 0
    assert (output / 'bench_tta.md').read_text().startswith('| model |')
    # The same command again does not train again: it reports what was measured.
    capsys.readouterr()
    assert script.main(argv) == 0
    assert 'already measured' in capsys.readouterr().out


def test_inference_benchmark_table_and_json(bench, tmp_path):
    script = bench('bench_inference')
    out = tmp_path / 'inference'
    assert script.main(['--device', 'cpu', '--models', 'resnet20', '--batch-sizes', '1,2', '--warmup', '1',
                        '--repeats', '2', '--out', str(out)]) == 0
    report = json.loads(out.with_suffix('.json').read_text())
    [cell] = report['cells']
    assert cell['model'] == 'resnet20' and [r['batch_size'] for r in cell['results']] == [1, 2]
    assert all(r['images_per_s'] > 0 and r['min_ms'] <= r['median_ms'] <= r['max_ms'] for r in cell['results'])
    assert '| resnet20 |' in out.with_suffix('.md').read_text()


def test_inference_benchmark_rejects_unknown_model(bench, capsys):
    assert bench('bench_inference').main(['--device', 'cpu', '--models', 'no_such_net*']) == 1
    assert 'no_such_net*' in capsys.readouterr().err


def test_airbench_data_is_our_copy_in_airbench_format(bench, cifar_root, tmp_path):
    """The part that needs neither airbench nor a GPU: our copy written as airbench's cached train.pt/test.pt."""
    assert bench('bench_airbench').main(['--data-dir', str(cifar_root), '--no-verify-md5', '--work-dir',
                                         str(tmp_path), '--prepare-only']) == 0
    test = load_cifar10(cifar_root, 'test', verify_md5=False)
    saved = torch.load(tmp_path / 'cifar10' / 'test.pt')
    assert saved['images'].shape == (10000, 32, 32, 3) and saved['images'].dtype == torch.uint8
    assert torch.equal(saved['images'][EXACT_TEST_SLICE].permute(0, 3, 1, 2), test.images[EXACT_TEST_SLICE])
    assert torch.equal(saved['labels'], test.labels) and len(saved['classes']) == 10
    assert torch.load(tmp_path / 'cifar10' / 'train.pt')['images'].shape == (50000, 32, 32, 3)


def test_airbench_benchmark_runs(bench, cifar_root, tmp_path):
    pytest.importorskip('airbench', reason='airbench is not installed (not a dependency; the GPU session installs '
                                           'the wheel: see benchmarks/README.md)')
    if not torch.cuda.is_available():
        pytest.skip('airbench trains on CUDA only (its networks call .cuda())')
    assert bench('bench_airbench').main(['--data-dir', str(cifar_root), '--no-verify-md5', '--work-dir',
                                         str(tmp_path), '--runs', '1', '--out', str(tmp_path / 'ab')]) == 0
    assert json.loads((tmp_path / 'ab.json').read_text())['summary']['runs'] == 1


def test_cpu_train_benchmark_runs_its_four_parts(bench, cifar_root, tmp_path):
    script = bench('bench_cpu_train')
    out = tmp_path / 'cpu.json'
    assert script.main(['--data-dir', str(cifar_root), '--no-verify-md5', '--models', 'resnet20', '--steps', '1',
                        '--repeats', '1', '--epoch-images', '256', '--json', str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report['models']
    assert row['model'] == 'resnet20' and row['bf16+CL'] > 0 and row['fp32 NCHW'] > 0
    assert 'mixed_precision=no' in row['fp32 NCHW command']
    assert {r['model'] for r in report['ratios']} == {'mxresnet20', 'se_mxresnext29_16x2d'}
    assert {r['precision'] for r in report['ratios']} == {'bf16' if cpu_has_native_bf16() else 'fp32'}
    assert report['epoch']['ratio'] > 0 and len(report['epoch']) == 3
    seed_style = next(v for k, v in report['epoch'].items() if k.startswith('seed-style'))
    assert 'cpu_allocator=system' in seed_style['command']  # a seed does not tune glibc; its own process keeps it so
    ceiling = report['ceiling']
    assert 0 < ceiling['conv_share'] < 1 and ceiling['ceiling_img_s'] > ceiling['step_img_s'] > 0
    assert ceiling['ceiling_ratio'] == pytest.approx(ceiling['ceiling_img_s'] / seed_style['images_per_s'])


def test_the_ceiling_counts_every_convolution_of_a_training_step(bench):
    import timm
    count = bench('bench_cpu_train').training_conv_flops
    model = timm.create_model('resnet20')
    # He's resnet20, 3x3 convs (in, out, output side, how many); the shortcuts pad, without convs
    convs = [(16, 16, 32, 6), (16, 32, 16, 1), (32, 32, 16, 5), (32, 64, 8, 1), (64, 64, 8, 5)]
    macs = sum(cin * cout * 9 * side ** 2 * n for cin, cout, side, n in convs)
    stem = 3 * 16 * 9 * 32 ** 2  # the image needs no gradient: forward and weight gradient only
    assert count(lambda: model(torch.randn(1, 3, 32, 32)).sum().backward()) == 2 * (3 * macs + 2 * stem)


def test_cpu_train_benchmark_refuses_an_unknown_model(bench, cifar_root, capsys):
    assert bench('bench_cpu_train').main(['--data-dir', str(cifar_root), '--models', 'nonet*']) == 2
    assert 'matches no model' in capsys.readouterr().err
