"""The training recipe machinery on CPU: configs and overrides, the label-preserving mixup, NaN and SIGTERM stops,
bf16 autocast, bit-exact resume after SIGKILL, and a real 2-process DDP run against gradient accumulation.

Runs use resnet20 on a few dozen images so each takes seconds; the subprocess ones run recipes/train.py as a user
would (`python` or `accelerate launch`).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.training import (ConfigError, LabelPreservingMixup, NonFiniteLossError, TrainingInterrupted,
                                  load_config, train)
from cifar_timm.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from training_runs import REPO, RESNET20, TRAIN_PY, export_params, tiny


def run_script(args: list[str], launcher: tuple[str, ...] = (sys.executable,), **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.Popen([*launcher, str(TRAIN_PY), '--config', str(RESNET20), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


# ---- configs ------------------------------------------------------------------------------------------------------

def test_config_composes_parents_and_overrides():
    config = load_config(REPO / 'recipes/configs/se_mxresnet20.yaml', ['epochs=3', 'data.dir=/x', 'optimizer.lr=0.05',
                                                                        'mixed_precision=bf16', 'seed=7'])
    assert config['model'] == 'se_mxresnet20'
    assert config['epochs'] == 3 and config['seed'] == 7 and config['mixed_precision'] == 'bf16'
    assert config['optimizer']['lr'] == 0.05 and config['optimizer']['weight_decay'] == 2e-4  # from _s0.yaml
    assert config['scheduler']['name'] == 'cosine' and config['data']['pad_mode'] == 'reflect'  # _s0_full.yaml
    assert config['mixup']['name'] == 'label_preserving' and config['loss']['label_smoothing'] == 0.1
    assert config['data']['dir'] == '/x' and config['output'] == str(Path('runs/se_mxresnet20'))


def test_mixed_precision_no_is_not_read_as_false():
    # YAML 1.1 reads a bare `no` as false; `mixed_precision=no` must still mean Accelerate's 'no'
    assert load_config(RESNET20, ['mixed_precision=no'])['mixed_precision'] == 'no'


@pytest.mark.parametrize('override, words', [
    (['epoch=3'], 'unknown config key `epoch`'),
    (['data.dri=/x'], 'unknown config key `data.dri`'),
    (['epochs'], 'not key=value'),
    (['mixed_precision=fp8'], 'mixed_precision'),
    (['batch_size=100', 'grad_accum_steps=3'], 'not divisible'),
    (['resume=/nonexistent/ckpt.pt'], 'not a checkpoint file'),
    (['optimizer=sgd'], 'is a section'),
    # every value is checked against its key's type and range, and the error names key, value and what is allowed
    (['data.limit=-5'], "`data.limit` is -5; allowed: null (all training images) or an integer >= 1"),
    (['checkpoint.keep=-1'], '`checkpoint.keep` is -1; allowed: an integer >= 0'),
    (['data.limit=abc'], "`data.limit` is 'abc'; allowed: null"),
    (['seed=abc'], "`seed` is 'abc'; allowed: an integer in [0, 4294967295]"),
    (['scheduler.milestones=abc'], "`scheduler.milestones` is 'abc'; allowed: a list of items, each an integer >= 0, "
                                   "e.g. [90, 135]"),
    (['scheduler.milestones=[90, 1.5]'], '`scheduler.milestones` is [90, 1.5]; allowed: a list of items'),
    (['optimizer.lr=fast'], "`optimizer.lr` is 'fast'; allowed: a number >= 0"),
    (['channels_last=1'], '`channels_last` is 1; allowed: one of auto, true, false'),
    (['cpu_threads=0'], '`cpu_threads` is 0; allowed: auto or an integer >= 1'),
])
def test_config_errors_name_the_problem(override, words):
    with pytest.raises(ConfigError, match=re.escape(words) if '; allowed' in words else words.replace('`', '.')):
        load_config(RESNET20, override)


@pytest.mark.parametrize('text, value', [('1e-3', 1e-3), ('1e6', 1e6), ('1.0e6', 1e6), ('2E-4', 2e-4), ('1', 1.0)])
def test_yaml_1_2_floats_are_numbers(tmp_path, text, value):
    # PyYAML's YAML 1.1 reads 1e-3 as a string, which timm then blamed on the optimizer name
    config = load_config(RESNET20, [f'optimizer.lr={text}'])
    assert config['optimizer']['lr'] == value and type(config['optimizer']['lr']) is float
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text(f'defaults: [{RESNET20}]\noptimizer:\n  lr: {text}\n  weight_decay: 5e-4\n')
    config = load_config(recipe)
    assert config['optimizer']['lr'] == value and config['optimizer']['weight_decay'] == 5e-4


def test_every_config_key_has_a_type():
    from cifar_timm.training.config import DEFAULTS, _leaf_keys, spec_for
    for key in _leaf_keys(DEFAULTS):
        spec_for(key)  # a KeyError names a key declared without a SCHEMA entry or a typed default


def test_output_that_is_a_file_is_refused_and_kept(tmp_path):
    existing = tmp_path / 'notes.txt'
    existing.write_text('keep me')
    for output in (existing, existing / 'run'):
        with pytest.raises(ConfigError, match=f'{re.escape(str(existing))} is a file, not a folder'):
            load_config(RESNET20, [f'output={output}'])
    assert existing.read_text() == 'keep me'


def test_cli_prints_errors_without_traceback_and_resolved_config(capsys):
    from cifar_timm.training import main
    assert main(['--config', str(RESNET20), 'epoch=3']) == 1
    err = capsys.readouterr().err
    assert err.startswith('train.py: error: unknown config key `epoch`') and 'Traceback' not in err
    assert main(['--config', str(RESNET20), '--print-config', 'optimizer.kwargs.dampening=0.0']) == 0
    assert 'dampening: 0.0' in capsys.readouterr().out


def test_model_args_pass_through():
    config = load_config(RESNET20, ['model_args.drop_rate=0.1'])
    assert config['model_args'] == {'drop_rate': 0.1}


# ---- label-preserving mixup --------------------------------------------------------------------------------------

def test_label_preserving_mixup_lambda_distribution():
    lam = LabelPreservingMixup(alpha=0.4).sample_lambda(200_000, np.random.default_rng(0))
    assert lam.min() >= 0.5 and lam.max() <= 1.0
    # Against torch's independent Beta(1.4, 0.4) sampler: same mean and quartiles of max(L, 1 - L).
    torch.manual_seed(0)
    ref = torch.distributions.Beta(1.4, 0.4).sample((200_000,)).double().numpy()
    ref = np.maximum(ref, 1 - ref)
    assert abs(lam.mean() - ref.mean()) < 3e-3
    assert np.allclose(np.quantile(lam, [0.25, 0.5, 0.75]), np.quantile(ref, [0.25, 0.5, 0.75]), atol=5e-3)


def test_label_preserving_mixup_keeps_own_image_dominant():
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 4, 4).contiguous()
    mixed = LabelPreservingMixup(0.4)(x, np.random.default_rng(1))
    # Every output is lam*x_i + (1-lam)*x_j with lam >= 0.5, constant per image: closer to its own value.
    assert torch.allclose(mixed, mixed[:, :1, :1, :1].expand_as(mixed))
    own, values = x[:, 0, 0, 0], mixed[:, 0, 0, 0]
    for i in range(8):
        assert all(abs(values[i] - own[i]) <= abs(values[i] - own[j]) + 1e-6 for j in range(8))
    assert not torch.equal(mixed, x)
    again = LabelPreservingMixup(0.4)(x, np.random.default_rng(1))
    assert torch.equal(mixed, again)  # the same generator seed draws the same pairs (exact resume)


def test_timm_mixup_uses_our_label_smoothing():
    from cifar_timm.training.components import build_mixup
    cfg = load_config(RESNET20, ['mixup.name=timm'])['mixup']
    mixup = build_mixup(cfg, label_smoothing=0.0, num_classes=10)
    _, target = mixup(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert target.shape == (4, 10) and torch.allclose(target.sum(1), torch.ones(4))
    assert (target == 0).sum() > 0  # no smoothing mass spread over every class (timm's default would be 0.1)


# ---- runs ----------------------------------------------------------------------------------------------------------

def test_bf16_autocast_run_and_export(cifar_root, tmp_path):
    out = tmp_path / 'bf16'
    # Also timm's Mixup/CutMix with SoftTargetCrossEntropy, EMA weights as the export, channels_last.
    results = train(load_config(RESNET20, tiny(cifar_root, out, 'epochs=1', 'mixed_precision=bf16', 'mixup.name=timm',
                                               'mixup.cutmix_alpha=1.0', 'loss.label_smoothing=0.1',
                                               'ema.enabled=true', 'ema.decay=0.9', 'channels_last=true')))
    assert results['mixed_precision'] == 'bf16' and np.isfinite(results['nll_test'])
    written = json.loads((out / 'export' / 'results.json').read_text())
    assert written['n_exact'] == 32 and written['model'] == 'resnet20'
    import timm
    model = timm.create_model('resnet20', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(out / 'export' / 'model.safetensors')))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in export_params(out).items())
    # the published test number is the fp32 one `cifar-timm eval` reproduces, whatever the run trained in
    from cifar_timm.evaluation import evaluate
    from cifar_timm.training.datasets import load_training_data
    images, labels = load_training_data(load_config(RESNET20, tiny(cifar_root, tmp_path / 'x'))['data'],
                                        model.pretrained_cfg).load_test()
    fp32 = evaluate(model.eval(), images[:32], labels[:32], mean=model.pretrained_cfg['mean'],
                    std=model.pretrained_cfg['std'])
    assert written['test_precision'] == 'fp32' and written['top1_exact'] == fp32['top1']
    assert written['nll_test'] == pytest.approx(fp32['nll'], rel=1e-6)
    assert (out / 'metrics.csv').read_text().startswith('epoch,lr,train_loss,train_top1,val_loss,val_top1')
    assert (out / 'curves.png').stat().st_size > 0 and (out / 'config.yaml').exists()
    with pytest.raises(ConfigError, match='already holds a run'):  # nothing on disk is overwritten by accident
        train(load_config(RESNET20, tiny(cifar_root, out, 'epochs=1')))


def test_a_bf16_run_without_ema_scores_its_test_rows_in_fp32(cifar_root, tmp_path):
    """Accelerate's prepare() wraps the model's own forward in autocast; the test rows must not go through it (EMA
    weights are a copy made before prepare, which is how the test above once passed while raw weights were scored
    in bf16)."""
    out = tmp_path / 'bf16_raw'
    train(load_config(RESNET20, tiny(cifar_root, out, 'epochs=1', 'mixed_precision=bf16', 'ema.enabled=false')))
    written = json.loads((out / 'export' / 'results.json').read_text())
    import timm
    from cifar_timm.evaluation import evaluate
    from cifar_timm.training.datasets import load_training_data
    model = timm.create_model('resnet20', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(out / 'export' / 'model.safetensors'))).eval()
    images, labels = load_training_data(load_config(RESNET20, tiny(cifar_root, tmp_path / 'x'))['data'],
                                        model.pretrained_cfg).load_test()
    images, labels = images[:written['n_test']], labels[:written['n_test']]
    fp32 = evaluate(model, images, labels)
    bf16 = evaluate(model, images, labels, amp_dtype=torch.bfloat16)
    assert fp32['nll'] != pytest.approx(bf16['nll'], rel=1e-6)  # the two precisions are told apart
    assert written['test_precision'] == 'fp32' and written['nll_test'] == pytest.approx(fp32['nll'], rel=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(cifar_root, tmp_path):
    out = tmp_path / 'nan'
    # 4 steps per epoch; epoch 0 checkpoints at step 4, the loss turns NaN at step 5 of epoch 1. (This run also
    # covers the torchvision data path.)
    config = load_config(RESNET20, tiny(cifar_root, out, 'debug.nan_at_step=5', 'checkpoint.every=1',
                                        'log.check_every=1', 'data.loader=torchvision', 'data.num_workers=0'))
    with pytest.raises(NonFiniteLossError, match='NaN/inf .* epoch 1 .*step-00000004.pt'):
        train(config)
    assert [p.name for p in list_checkpoints(out / 'checkpoints')] == ['step-00000004.pt']
    state = load_checkpoint(out / 'checkpoints' / 'step-00000004.pt')
    assert all(torch.isfinite(v).all() for v in state['model'].values() if v.is_floating_point())
    assert not (out / 'export').exists()


def test_sigterm_saves_a_checkpoint(cifar_root, tmp_path):
    out = tmp_path / 'term'
    proc = run_script(tiny(cifar_root, out, 'epochs=1000', 'checkpoint.every=1000', 'log.check_every=1'))
    _wait_for(lambda: (out / 'metrics.csv').exists() and len((out / 'metrics.csv').read_text().splitlines()) > 1,
              proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output
    assert 'SIGTERM: saved' in output and 'resume=auto' in output
    ckpt = latest_checkpoint(out / 'checkpoints')
    state = load_checkpoint(ckpt)
    assert ckpt is not None and state['num_updates'] >= 4

    # Resumed to the end of the interrupted epoch: its row counts the whole epoch (64 images), not only the steps
    # after the resume, so status' epoch times and ETAs stay right.
    resumed = run_script(tiny(cifar_root, out, f'epochs={state["epoch"] + 1}', 'resume=auto'))
    output, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, output
    last = list(csv.DictReader((out / 'metrics.csv').open()))[-1]
    assert int(last['epoch']) == state['epoch']
    assert float(last['images_per_s']) * float(last['epoch_time_s']) == pytest.approx(64, rel=0.01)


def test_sigkill_and_resume_matches_uninterrupted_run(cifar_root, tmp_path):
    args = ['epochs=3', 'data.limit=48', 'checkpoint.every=1', 'checkpoint.keep=0', 'ema.enabled=true',
            'ema.decay=0.9',  # EMA state must resume too
            'cpu_threads=1']  # the thread governor would change the summation order when another process is busy
    reference = train(load_config(RESNET20, tiny(cifar_root, tmp_path / 'ref', *args)))

    out = tmp_path / 'killed'
    proc = run_script(tiny(cifar_root, out, *args))
    _wait_for(lambda: latest_checkpoint(out / 'checkpoints') is not None, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = len(list_checkpoints(out / 'checkpoints'))
    assert 1 <= done < 3, 'the run must be killed mid-way'

    resumed = run_script(tiny(cifar_root, out, *args, 'resume=auto'))
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert 'resumed from' in output
    ref_params, params = export_params(tmp_path / 'ref'), export_params(out)
    assert all(torch.equal(ref_params[k], params[k]) for k in ref_params)
    result = json.loads((out / 'export' / 'results.json').read_text())
    for key in ('top1_val', 'top1_test', 'nll_test', 'top1_exact'):
        assert result[key] == reference[key], key
    assert len((out / 'metrics.csv').read_text().splitlines()) == 1 + 3
    assert [s['from_epoch'] for s in result['segments']] == [0]  # resumed on the same machine: one stretch


def test_a_run_resumed_with_other_settings_records_each_stretch(cifar_root, tmp_path):
    """`auto` resolves again at every resume, so a run continued on another machine may change precision or memory
    format halfway: results.json (and the card) list each stretch instead of naming the last machine only."""
    first = tmp_path / 'first'
    train(load_config(RESNET20, tiny(cifar_root, first, 'channels_last=false', 'mixed_precision=no',
                                     'checkpoint.every=1', 'debug.max_steps=4')))  # 4 steps: epoch 1 of 2
    assert latest_checkpoint(first / 'checkpoints') is not None
    legacy = tmp_path / 'legacy'
    shutil.copytree(first, legacy)
    resumed = train(load_config(RESNET20, tiny(cifar_root, first, 'channels_last=true', 'mixed_precision=no',
                                               'resume=auto')))
    here = resumed['hardware']
    assert resumed['segments'] == [
        {'from_epoch': 0, 'hardware': here, 'mixed_precision': 'no', 'channels_last': False},
        {'from_epoch': 1, 'hardware': here, 'mixed_precision': 'no', 'channels_last': True}]
    assert json.loads((first / 'export' / 'results.json').read_text())['segments'] == resumed['segments']

    # a checkpoint written before stretches were recorded: its config.yaml gives the first stretch's settings
    path = latest_checkpoint(legacy / 'checkpoints')
    state = load_checkpoint(path)
    del state['segments']
    torch.save(state, path)
    resumed = train(load_config(RESNET20, tiny(cifar_root, legacy, 'channels_last=false', 'mixed_precision=no',
                                               'resume=auto')))
    assert resumed['segments'] == [
        {'from_epoch': 0, 'hardware': None, 'mixed_precision': 'no', 'channels_last': False},
        {'from_epoch': 1, 'hardware': here, 'mixed_precision': 'no', 'channels_last': False}]
    assert resumed['hardware'] == f'not recorded; {here}'


def test_two_process_ddp_equals_one_process_grad_accumulation(cifar_root, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU starts two gloo ranks; each takes half of every
    global batch, so after training its parameters equal a 1-process run accumulating the two halves."""
    # 64 images: two optimizer steps; fp32 NCHW as before the CPU defaults became bf16 + channels_last, whose
    # rounding and summation order would hide a wrong split's size of error
    common = ['epochs=1', 'batch_size=32', 'mixup.name=none', 'mixed_precision=no', 'channels_last=false']
    ddp = run_script(tiny(cifar_root, tmp_path / 'ddp', *common),
                     launcher=(sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu',
                               '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
                               '--dynamo_backend', 'no'))
    single = train(load_config(RESNET20, tiny(cifar_root, tmp_path / 'one', *common, 'grad_accum_steps=2')))
    output, _ = ddp.communicate(timeout=300)
    assert ddp.returncode == 0, output
    results = json.loads((tmp_path / 'ddp' / 'export' / 'results.json').read_text())
    assert results['hardware'].startswith('2x CPU') and single['hardware'].startswith('1x CPU')
    import timm
    names = [k for k, _ in timm.create_model('resnet20').named_parameters()]
    a, b = export_params(tmp_path / 'ddp'), export_params(tmp_path / 'one')
    # Float sums in another order (all-reduce vs accumulation, other thread counts) differ by ~1e-7 after the first
    # step; an early ResNet amplifies that to ~1e-5 by the second. A wrong split would be off by the update itself.
    assert max((a[k] - b[k]).abs().max().item() for k in names) < 2e-4
    assert (a['stem.norm.weight'] - 1).abs().max() > 5e-3  # BN weights start at 1: the two steps moved them


# ---- untrusted checkpoints and run folders ---------------------------------------------------------------------------

class _ShellPayload:
    """What an attacker pickles into a `.pt`: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_planted_checkpoint_runs_no_code(cifar_root, tmp_path, capsys):
    from cifar_timm.training import main
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pt'
    torch.save({'config': {'model': 'resnet20'}, 'model': _ShellPayload(marker)}, evil)
    assert main(['--config', str(RESNET20), *tiny(cifar_root, tmp_path / 'a'), f'resume={evil}']) == 1
    err = capsys.readouterr().err
    assert f'refused checkpoint {evil}' in err and 'nothing in it ran' in err and 'Traceback' not in err
    # resume=auto picks up a step-*.pt planted in the run's own checkpoints/ folder the same way
    planted = tmp_path / 'b' / 'checkpoints' / 'step-00000099.pt'
    planted.parent.mkdir(parents=True)
    evil.rename(planted)
    assert main(['--config', str(RESNET20), *tiny(cifar_root, tmp_path / 'b'), 'resume=auto']) == 1
    assert f'refused checkpoint {planted}' in capsys.readouterr().err
    assert not marker.exists()
    assert sorted(p.name for p in (tmp_path / 'b').iterdir()) == ['checkpoints']  # nothing written


@pytest.mark.parametrize('content, words', [
    (b'not a checkpoint', 'cannot read checkpoint'),
    ({'model': {}}, 'is not a cifar-timm training checkpoint .*lacks optimizer'),
])
def test_foreign_checkpoint_is_a_clear_error(tmp_path, content, words):
    from cifar_timm.training.checkpoint import CheckpointError
    path = tmp_path / 'step-00000001.pt'
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(CheckpointError, match=words) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_checkpoint_from_before_tensor_rng_states_still_resumes(tmp_path):
    """Runs in progress when checkpoints became code-free hold NumPy's RNG state as a pickled ndarray."""
    import random
    from cifar_timm.training.checkpoint import CHECKPOINT_KEYS, set_rng_state
    np.random.seed(3)
    old_rng = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    expected = np.random.random(4)
    path = tmp_path / 'step-00000004.pt'
    torch.save(dict(dict.fromkeys(CHECKPOINT_KEYS, 0), rng=[old_rng]), path)
    np.random.seed(0)
    set_rng_state(load_checkpoint(path)['rng'][0])
    assert np.array_equal(np.random.random(4), expected)


def make_finished_run(output: Path) -> Path:
    """A finished run folder as `launch_many unpack` leaves it: export/, metrics.csv, config.yaml, no checkpoints/."""
    import timm
    from cifar_timm.training.export import write_export
    write_export(output, timm.create_model('resnet20'), {}, {'model': 'resnet20'})
    (output / 'metrics.csv').write_text('epoch,lr,train_loss,train_top1,val_loss,val_top1,epoch_time_s,images_per_s\n'
                                        '0,0.1,2.3,10.0,2.3,11.0,12.5,20.0\n')
    (output / 'config.yaml').write_text('model: resnet20\n')
    return output


def test_resume_auto_never_trains_over_a_finished_run(cifar_root, tmp_path):
    out = make_finished_run(tmp_path / 'done')
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    with pytest.raises(ConfigError, match='holds a finished run .*no checkpoint.* kept as it is'):
        train(load_config(RESNET20, tiny(cifar_root, out, 'resume=auto')))
    shutil.rmtree(out / 'export')  # metrics of a run whose checkpoints did not come along
    with pytest.raises(ConfigError, match=r'metrics.csv with 1 epoch\(s\) but no checkpoint'):
        train(load_config(RESNET20, tiny(cifar_root, out, 'resume=auto')))
    with pytest.raises(ConfigError, match='already holds a run'):
        train(load_config(RESNET20, tiny(cifar_root, out)))
    assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} == \
        {p: b for p, b in before.items() if 'export' not in p.parts}


def test_sigterm_is_honoured_at_the_next_step_and_resumes_exactly(cifar_root, tmp_path):
    """The stop flag is read every optimizer step, not only every log.check_every steps (here never: 1000)."""
    args = ['epochs=1', 'data.limit=96', 'log.check_every=1000',  # 6 steps in the epoch
            'cpu_threads=1']  # the thread governor would change the summation order when another process is busy
    reference = train(load_config(RESNET20, tiny(cifar_root, tmp_path / 'ref', *args)))

    class NotedSigterm:  # what recipes/train.py installs while it imports; the trainer takes the note over
        set = False

        def __call__(self, signum, frame):
            self.set = True

    out = tmp_path / 'term'
    previous = signal.signal(signal.SIGTERM, NotedSigterm())
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(TrainingInterrupted, match='SIGTERM: saved .*optimizer step 1;'):
            train(load_config(RESNET20, tiny(cifar_root, out, *args)))
    finally:
        signal.signal(signal.SIGTERM, previous)
    state = load_checkpoint(latest_checkpoint(out / 'checkpoints'))
    assert state['num_updates'] == 1 and state['loader']['step'] == 1

    resumed = train(load_config(RESNET20, tiny(cifar_root, out, *args, 'resume=auto')))
    ref_params, params = export_params(tmp_path / 'ref'), export_params(out)
    assert all(torch.equal(ref_params[k], params[k]) for k in ref_params)
    assert resumed['top1_test'] == reference['top1_test'] and resumed['nll_test'] == reference['nll_test']


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f'run ended early (rc {proc.returncode}):\n{proc.stdout.read()}')
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError('timed out waiting for the run')
        time.sleep(0.05)
