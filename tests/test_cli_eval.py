"""`cifar-timm eval`, `predict` and `bench` end to end through the CLI entry point (in-process), on CPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

import cifar_timm  # noqa: F401  (registers resnet20)
from cifar_timm.cli import main
from cifar_timm.constants import CIFAR10_CLASSES
from cifar_timm.data import load_cifar10
from cifar_timm.evaluation import evaluate

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope='module')
def checkpoint_files(tmp_path_factory):
    """resnet20 weights saved as safetensors and as a torch state_dict, and the model they came from."""
    torch.manual_seed(1)
    model = timm.create_model('resnet20').eval()
    folder = tmp_path_factory.mktemp('checkpoints')
    save_file(model.state_dict(), folder / 'resnet20.safetensors')
    torch.save({'state_dict': model.state_dict()}, folder / 'resnet20.pth')
    return model, folder


def test_eval_json_on_a_slice(cifar_root, capsys):
    code, out, _ = run_cli(capsys, 'eval', 'resnet20', '--data-dir', cifar_root, '--indices', '0:100',
                           '--no-verify-md5', '--device', 'cpu', '--batch-size', '50', '--json')
    assert code == 0
    report = json.loads(out)
    assert report['n'] == 100 and report['indices'] == '0:100' and report['split'] == 'test'
    for key in ('top1', 'top5', 'nll', 'ece', 'images_per_s'):
        assert isinstance(report[key], float)
    lo, hi = report['top1_ci95']
    assert lo <= report['top1'] <= hi


def test_eval_checkpoint_gives_the_models_own_numbers(cifar_root, capsys, checkpoint_files):
    model, folder = checkpoint_files
    split = load_cifar10(cifar_root, 'test', verify_md5=False)
    expected = evaluate(model, split.images[100:180], split.labels[100:180], batch_size=40)['correct']
    for name in ('resnet20.safetensors', 'resnet20.pth'):
        code, out, err = run_cli(capsys, 'eval', 'resnet20', '--checkpoint', folder / name, '--data-dir', cifar_root,
                                 '--indices', '100:180', '--no-verify-md5', '--batch-size', '40', '--json')
        assert code == 0, err
        assert json.loads(out)['correct'] == expected


def test_eval_human_output(cifar_root, capsys):
    code, out, _ = run_cli(capsys, 'eval', 'resnet20', '--data-dir', cifar_root, '--indices', '0:20',
                           '--no-verify-md5', '--tta')
    assert code == 0
    assert 'test[0:20], n=20' in out and '95% CI' in out and 'ECE' in out


@pytest.mark.parametrize('content, message', [
    (b'not a safetensors file at all', 'cannot load checkpoint'),
    (None, 'another architecture'),  # resnet32 weights for resnet20
])
def test_eval_bad_checkpoint_is_a_clear_error(cifar_root, capsys, tmp_path, content, message):
    path = tmp_path / 'bad.safetensors'
    if content is None:
        save_file(timm.create_model('resnet32').state_dict(), path)
    else:
        path.write_bytes(content)
    code, _, err = run_cli(capsys, 'eval', 'resnet20', '--checkpoint', path, '--data-dir', cifar_root,
                           '--indices', '0:10', '--no-verify-md5')
    assert code == 2 and message in err and str(path) in err and 'Traceback' not in err


@pytest.mark.parametrize('argv, message', [
    (['--indices', '0:10'], '--no-verify-md5'),  # the shared copy fails the official md5 check
    (['--indices', '10:5', '--no-verify-md5'], 'START < STOP'),
    (['--indices', 'first', '--no-verify-md5'], 'START:STOP'),
])
def test_eval_input_errors(cifar_root, capsys, argv, message):
    code, _, err = run_cli(capsys, 'eval', 'resnet20', '--data-dir', cifar_root, *argv)
    assert code == 2 and message in err


def test_eval_missing_data_and_unknown_model(tmp_path, cifar_root, capsys):
    code, _, err = run_cli(capsys, 'eval', 'resnet20', '--data-dir', tmp_path, '--no-verify-md5')
    assert code == 2 and 'no CIFAR-10 at' in err
    code, _, err = run_cli(capsys, 'eval', 'no_such_net', '--data-dir', cifar_root, '--no-verify-md5')
    assert code == 2 and 'unknown model' in err


def test_predict_png_and_jpeg_of_any_size(tmp_path, capsys, checkpoint_files):
    _, folder = checkpoint_files
    rng = np.random.default_rng(0)
    png, jpeg = tmp_path / 'wide.png', tmp_path / 'tall.jpg'
    Image.fromarray(rng.integers(0, 256, (40, 97, 3), dtype=np.uint8)).save(png)
    Image.fromarray(rng.integers(0, 256, (300, 64), dtype=np.uint8), mode='L').save(jpeg, quality=90)
    code, out, err = run_cli(capsys, 'predict', 'resnet20', png, jpeg, '--top-k', '3',
                             '--checkpoint', folder / 'resnet20.safetensors', '--json')
    assert code == 0, err
    results = json.loads(out)['results']
    assert [r['image'] for r in results] == [str(png), str(jpeg)]
    for r in results:
        probs = [p['probability'] for p in r['predictions']]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(p['label'] == CIFAR10_CLASSES[p['index']] for p in r['predictions'])
    code, out, _ = run_cli(capsys, 'predict', 'resnet20', png)
    assert code == 0 and out.startswith(str(png)) and len(out.strip().splitlines()) == 6


def test_predict_rejects_non_images_and_missing_files(tmp_path, capsys):
    text = tmp_path / 'notes.png'
    text.write_text('this is not a picture')
    code, _, err = run_cli(capsys, 'predict', 'resnet20', text)
    assert code == 2 and 'is not a readable image' in err and str(text) in err
    code, _, err = run_cli(capsys, 'predict', 'resnet20', tmp_path / 'missing.jpg')
    assert code == 2 and 'does not exist' in err


def test_predict_reads_a_16_bit_grey_png_as_the_same_picture_in_8_bits(tmp_path, capsys, checkpoint_files):
    _, folder = checkpoint_files
    grey = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint16)
    png16, png8 = tmp_path / 'grey16.png', tmp_path / 'grey8.png'
    Image.fromarray(grey * 257).save(png16)  # mode I;16: PIL's convert('RGB') alone would clip it to white
    Image.fromarray(grey.astype(np.uint8)).save(png8)
    code, out, err = run_cli(capsys, 'predict', 'resnet20', png16, png8,
                             '--checkpoint', folder / 'resnet20.safetensors', '--json')
    assert code == 0, err
    wide, narrow = json.loads(out)['results']
    assert wide['predictions'] == narrow['predictions']


def test_predict_refuses_a_decompression_bomb(tmp_path, capsys):
    from test_images import png_declaring
    bomb = tmp_path / 'huge.png'
    bomb.write_bytes(png_declaring(20000, 20000))
    code, _, err = run_cli(capsys, 'predict', 'resnet20', bomb)
    assert code == 2 and f'{bomb} is refused as a possible decompression bomb' in err and 'Traceback' not in err


def test_nan_weights_are_refused_by_eval_and_predict(cifar_root, tmp_path, capsys, checkpoint_files):
    model, _ = checkpoint_files
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state['head.fc.weight'][0, 0] = float('nan')
    state['stem.norm.running_var'][0] = float('inf')
    path = tmp_path / 'diverged.safetensors'
    save_file(state, path)
    image = tmp_path / 'x.png'
    Image.new('RGB', (32, 32)).save(image)
    for argv in (['eval', 'resnet20', '--data-dir', cifar_root, '--indices', '0:10', '--no-verify-md5'],
                 ['predict', 'resnet20', image]):
        code, out, err = run_cli(capsys, *argv, '--checkpoint', path)
        assert code == 2 and f'{path} holds NaN or inf in 2 tensor(s)' in err and 'Traceback' not in err, err
        assert 'top-1' not in out


def test_bench_json(capsys):
    code, out, err = run_cli(capsys, 'bench', 'resnet20', '--device', 'cpu', '--batch-sizes', '1,4',
                             '--warmup', '1', '--repeats', '2', '--channels-last', '--json')
    assert code == 0, err
    report = json.loads(out)
    assert [r['batch_size'] for r in report['results']] == [1, 4]
    assert all(r['images_per_s'] > 0 and r['min_ms'] <= r['median_ms'] for r in report['results'])
    assert report['timer'] == 'perf_counter' and report['params'] > 0
    code, _, err = run_cli(capsys, 'bench', 'resnet20', '--batch-sizes', '0,x')
    assert code == 2 and '--batch-sizes' in err


def test_a_cpu_is_described_by_its_name_and_vector_instructions():
    """Cards and benchmarks record the machine: a CPU's speed depends on its ISA (AVX2 vs AVX512) as much as on its
    name, so both are named, with the torch threads."""
    from cifar_timm.commands.bench import cpu_model_name, describe_device
    described = describe_device(torch.device('cpu'))
    assert described.startswith(f'CPU ({cpu_model_name()}, ')
    assert described.endswith(f'{torch.get_num_threads()} threads)')
    assert torch.backends.cpu.get_cpu_capability() in described
    from cifar_timm.layers.grouped_conv import cpu_has_amx
    from cifar_timm.training.cpu import cpu_has_native_bf16
    assert (', AMX, ' in described) == cpu_has_amx()
    assert (', bf16, ' in described) == (cpu_has_native_bf16() and not cpu_has_amx())
    from cifar_timm.cpuinfo import amd_zen_generation
    assert amd_zen_generation() in described  # '' except on AMD, whose VMs often name only "AMD EPYC"


def test_loader_benchmark_script_smoke(cifar_root):
    """The benchmark itself is run by hand (docs/benchmarks.md); here only a few steps, to keep it working."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'benchmarks' / 'bench_loader.py'), '--data-dir', str(cifar_root),
         '--no-verify-md5', '--max-steps', '3', '--batch-size', '64', '--workers', '0'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'GPU-resident' in result.stdout and 'torchvision' in result.stdout and 'ratio' in result.stdout
