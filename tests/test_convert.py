"""`cifar-timm convert` on checkpoints written here in each source's layout (no shared files needed): the weights
arrive unchanged, the source's preprocessing travels in config.json, and a damaged, unsafe or mismatched file is
refused with the name of the file or tensor at fault, leaving what is on disk alone."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.data import resolve_data_config

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.cli import main
from cifar_timm.constants import CIFAR10_MEAN
from cifar_timm.convert.sources import IMAGENET_MEAN, IMAGENET_STD


def akamaster_layout(model: torch.nn.Module) -> dict:
    """`model`'s weights as akamaster saves them: DataParallel `module.` names, no num_batches_tracked."""
    names = {'stem.conv': 'conv1', 'stem.norm': 'bn1', 'head.fc': 'linear'}
    state_dict = {}
    for name, tensor in model.state_dict().items():
        if name.endswith('num_batches_tracked'):
            continue
        module, _, param = name.rpartition('.')
        if m := re.fullmatch(r'stages\.(\d+)\.(.+)', module):
            module = f'layer{int(m[1]) + 1}.{m[2]}'
        state_dict[f'module.{names.get(module, module)}.{param}'] = tensor.clone()
    return {'state_dict': state_dict, 'best_prec1': 91.0}


@pytest.fixture(scope='module')
def resnet20() -> torch.nn.Module:
    model = timm.create_model('resnet20').eval()
    with torch.no_grad():  # BN statistics that differ from the defaults, so a lost buffer shows
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    return model


def convert(*args) -> int:
    return main(['convert', *map(str, args)])


def save(tmp_path: Path, checkpoint: dict, name: str = 'resnet20.th') -> Path:
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


def test_akamaster_checkpoint_converts_into_a_folder_timm_loads(resnet20, tmp_path):
    path = save(tmp_path, akamaster_layout(resnet20))
    out = tmp_path / 'out'
    assert convert('--from', 'akamaster', path, '--model', 'resnet20', '--out', out) == 0
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    config = json.loads((out / 'config.json').read_text())
    assert config['architecture'] == 'resnet20' and config['pretrained_cfg']['tag'] == 'akamaster'

    from_dir = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    from_file = timm.create_model(
        'resnet20', pretrained=True, pretrained_cfg_overlay=dict(file=str(out / 'model.safetensors'))).eval()
    for model in (from_dir, from_file):
        for name, tensor in resnet20.state_dict().items():
            if not name.endswith('num_batches_tracked'):
                torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    # akamaster normalised with ImageNet's statistics: the folder says so, and timm's data config follows
    data_config = resolve_data_config(model=from_dir)
    assert tuple(data_config['mean']) == IMAGENET_MEAN and tuple(data_config['std']) == IMAGENET_STD
    assert 'BSD-2-Clause' in (out / 'README.md').read_text()


def test_publish_refuses_a_converted_folder(resnet20, tmp_path, capsys):
    out = tmp_path / 'resnet20.akamaster'
    assert convert('--from', 'akamaster', save(tmp_path, akamaster_layout(resnet20)), '--model', 'resnet20',
                   '--out', out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(['publish', str(out), '--dry-run']) == 2  # refused before the Hub is asked anything
    err = capsys.readouterr().err
    assert 'akamaster/pytorch_resnet_cifar10' in err and 'not weights cifar-timm trained' in err
    assert 'cifar-timm export RUN_DIR' in err and 'bsd-2-clause' in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize('damage, named', [
    (lambda sd: sd.pop('module.layer3.2.bn2.running_var'), 'stages.2.2.bn2.running_var'),
    (lambda sd: sd.update({'module.layer2.0.conv1.weight': torch.zeros(32, 16, 1, 1)}),
     'module.layer2.0.conv1.weight -> stages.1.0.conv1.weight: file (32, 16, 1, 1), model (32, 16, 3, 3)'),
    (lambda sd: sd.update({'module.layer4.0.conv1.weight': torch.zeros(1)}), 'module.layer4.0.conv1.weight'),
    (lambda sd: sd.update({'module.fc.weight': torch.zeros(1)}), 'module.fc.weight (no mapping rule)'),
    (lambda sd: sd['module.linear.bias'].__setitem__(3, float('nan')), 'module.linear.bias -> head.fc.bias'),
], ids=['missing', 'wrong-shape', 'extra-beyond-the-model', 'extra-unmapped', 'nan'])
def test_a_mismatched_or_damaged_tensor_is_refused_by_name(resnet20, tmp_path, capsys, damage, named):
    checkpoint = akamaster_layout(resnet20)
    damage(checkpoint['state_dict'])
    out = tmp_path / 'out'
    assert convert('--from', 'akamaster', save(tmp_path, checkpoint), '--model', 'resnet20', '--out', out) == 2
    error = capsys.readouterr().err
    assert named in error and 'does not convert into resnet20' in error
    assert not out.exists()  # nothing half-written


def test_a_truncated_file_is_refused_as_damaged(resnet20, tmp_path, capsys):
    path = save(tmp_path, akamaster_layout(resnet20))
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    assert convert('--from', 'akamaster', path, '--model', 'resnet20', '--out', tmp_path / 'out') == 2
    assert f'{path} is not a readable PyTorch checkpoint' in capsys.readouterr().err


class Payload:
    """Stands for any object a pickle could smuggle in; weights_only loading must not build it."""


def test_a_file_pickling_objects_is_refused_unread(tmp_path, capsys):
    path = save(tmp_path, {'state_dict': {'w': torch.zeros(1)}, 'extra': Payload()})
    assert convert('--from', 'fattorib', path, '--model', 'resnet20_fattorib', '--out', tmp_path / 'out') == 2
    error = capsys.readouterr().err
    assert 'pickles objects other than tensors' in error and 'weights_only=True' in error


def test_an_existing_out_folder_is_kept_unless_forced(resnet20, tmp_path, capsys):
    path = save(tmp_path, akamaster_layout(resnet20))
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    assert convert('--from', 'akamaster', path, '--model', 'resnet20', '--out', out) == 2
    assert '--force' in capsys.readouterr().err and (out / 'notes.txt').read_text() == 'mine'
    assert convert('--from', 'akamaster', path, '--model', 'resnet20', '--out', out, '--force') == 0
    assert not (out / 'notes.txt').exists() and (out / 'model.safetensors').is_file()


def test_a_model_the_source_never_published_is_refused_with_the_choices(tmp_path, capsys):
    path = save(tmp_path, {'w': torch.zeros(1)})
    assert convert('--from', 'akamaster', path, '--model', 'resnet20_fattorib', '--out', tmp_path / 'o') == 2
    assert 'resnet20, resnet32' in capsys.readouterr().err
    assert convert('--from', 'akamaster', path, '--model', 'resnet20') == 2
    assert 'needs FILE, --from, --model and --out' in capsys.readouterr().err


# --- Keras (h5py) ---------------------------------------------------------------------------------------------

KERAS_PARTS = {'bn1': 'bn1', 'bn2': 'bn2', 'conv1': 'conv1', 'conv2': 'conv2', 'downsample.conv': 'red',
               'se.fc1': 'se_block_squeeze', 'se.fc2': 'se_block_excite'}
KERAS_PARAMS = {'running_mean': 'moving_mean', 'running_var': 'moving_variance'}


def write_keras_h5(model: torch.nn.Module, path: Path) -> None:
    """`model`'s weights as Keras saves the SE-MXResNet20 (layer names, HWIO kernels, (in, out) dense kernels)."""
    h5py = pytest.importorskip('h5py', reason='h5py is not installed (pip install "cifar-timm[keras]")')
    layers: dict[str, dict] = {}
    for name, tensor in model.state_dict().items():
        module, _, param = name.rpartition('.')
        if param == 'num_batches_tracked':
            continue
        if m := re.fullmatch(r'stages\.(\d+)\.(\d+)\.(.+)', module):
            layer = f'stage{int(m[1]) + 1}_res_block{int(m[2]) + 1}_{KERAS_PARTS[m[3]]}'
        else:
            layer = {'stem.conv': 'stem_conv', 'norm': 'final_bn', 'head.fc': 'classifier'}[module]
        if param == 'weight' and tensor.ndim > 1:
            param, tensor = 'kernel', (tensor[:, :, 0, 0].t() if '.se.' in name else
                                       tensor.permute(2, 3, 1, 0) if tensor.ndim == 4 else tensor.t())
        elif 'bn' in layer:
            param = KERAS_PARAMS.get(param, {'weight': 'gamma', 'bias': 'beta'}.get(param))
        layers.setdefault(layer, {})[f'{layer}/{param}:0'] = tensor.numpy()
    with h5py.File(path, 'w') as f:
        weights = f.create_group('model_weights')
        weights.attrs['layer_names'] = [n.encode() for n in layers]
        for layer, tensors in layers.items():
            group = weights.create_group(layer)
            group.attrs['weight_names'] = [n.encode() for n in tensors]
            for name, array in tensors.items():
                group[name] = array


def test_keras_h5_converts_with_kernels_transposed(tmp_path):
    model = timm.create_model('se_mxresnet20').eval()
    path = tmp_path / 'se-mxresnet20.h5'
    write_keras_h5(model, path)
    out = tmp_path / 'out'
    assert convert('--from', 'keras', path, '--model', 'se_mxresnet20', '--out', out) == 0
    loaded = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert tuple(resolve_data_config(model=loaded)['mean']) == CIFAR10_MEAN  # the Keras net used the CIFAR statistics


def test_keras_without_h5py_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'h5py', None)  # import h5py now raises ImportError
    path = tmp_path / 'weights.h5'
    path.write_bytes(b'')
    assert convert('--from', 'keras', path, '--model', 'se_mxresnet20', '--out', tmp_path / 'out') == 2
    assert 'pip install "cifar-timm[keras]"' in capsys.readouterr().err


def test_a_damaged_h5_is_refused_as_damaged(tmp_path, capsys):
    pytest.importorskip('h5py', reason='h5py is not installed (pip install "cifar-timm[keras]")')
    path = tmp_path / 'weights.h5'
    path.write_bytes(b'\x89HDF\r\n\x1a\n' + b'\0' * 64)
    assert convert('--from', 'keras', path, '--model', 'se_mxresnet20', '--out', tmp_path / 'out') == 2
    assert f'{path} is not a readable Keras HDF5 weights file' in capsys.readouterr().err
