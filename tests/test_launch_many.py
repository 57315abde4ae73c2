"""recipes/launch_many.py as a device session uses it, on CPU: two real trainings at once, polled, stopped, packed
into size-capped files, unpacked elsewhere, exported, and the stopped one resumed from its unpacked checkpoint."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'recipes' / 'launch_many.py'
TINY = ['--set', "mixed_precision='no'", '--set', 'channels_last=false', '--set', 'data.verify_md5=false',
        '--set', 'data.limit=128', '--set', 'batch_size=32', '--set', 'data.val_limit=64', '--set',
        'data.test_limit=64', '--set', 'log.tensorboard=false', '--set', 'epochs=1']
LIMITS = dict(files=4, file_mib=0.5, total_mib=1.5)


def launch(*args: str, check: bool = True, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(LAUNCH), *map(str, args)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env=None if env is None else {**os.environ, **env})
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def status(runs: Path) -> dict[str, dict]:
    return {r['name']: r for r in json.loads(launch('status', '--runs-dir', runs, '--json').stdout)}


def wait_until(condition, runs: Path, timeout: float = 240.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = status(runs)
        if condition(records):
            return records
        time.sleep(0.5)
    logs = {p.parent.name: p.read_text()[-2000:] for p in runs.glob('*/train.log')}
    raise AssertionError(f'runs did not get there in {timeout:.0f} s: {records}\n{logs}')


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def runs(tmp_path):
    folder = tmp_path / 'runs'
    yield folder
    if (folder / 'launcher.json').exists():  # never leave trainings behind a failed test
        launch('stop', '--runs-dir', folder, '--timeout', '10', check=False)


def test_launch_poll_stop_pack_unpack_export_resume(runs, cifar_root, tmp_path):
    launch('start', 'resnet20', 'xresnet20', '--runs-dir', runs, '--data-dir', cifar_root, '-j', '2', *TINY,
           '--set-for', 'xresnet20', 'epochs=1000', '--set-for', 'xresnet20', 'checkpoint.every=1')
    first = status(runs)
    assert set(first) == {'resnet20', 'xresnet20'}
    assert {r['state'] for r in first.values()} <= {'queued', 'running', 'finished'}

    supervisor_log = runs / 'launcher.log'
    records = wait_until(lambda r: r['xresnet20']['epochs_done'] >= 2 and 'resnet20 finished' in
                         supervisor_log.read_text(), runs)
    assert records['resnet20']['state'] == 'finished'
    assert records['xresnet20']['state'] == 'running' and records['xresnet20']['eta_s'] > 0
    log = supervisor_log.read_text()
    assert log.index('xresnet20 started') < log.index('resnet20 finished')  # both ran at once
    followed = launch('status', '--runs-dir', runs, '--follow', '0.5', '--max-wait', '2').stdout
    assert followed.count('-- ') >= 2 and 'xresnet20' in followed  # the polling call of a device session

    stopped = launch('stop', '--runs-dir', runs, '--timeout', '120').stdout
    records = status(runs)
    assert 'xresnet20' in stopped and records['xresnet20']['state'] == 'stopped'
    assert records['xresnet20']['returncode'] == 143 and records['xresnet20']['latest_checkpoint']
    for r in records.values():  # the epoch times the notes need
        assert r['epoch_time_s'] > 0 and r['concurrency'] == 2
    assert records['resnet20']['top1_exact'] is not None

    # Pack under limits far below the files' sizes: files are split and spread over several volumes.
    volumes = []
    for i in range(12):
        out = tmp_path / f'out{i}'
        printed = launch('pack', out, '--runs-dir', runs, '--max-files', LIMITS['files'],
                         '--max-file-mib', LIMITS['file_mib'], '--max-total-mib', LIMITS['total_mib']).stdout
        volumes.append(out)
        files = list(out.iterdir())
        assert len(files) <= LIMITS['files']
        assert all(f.stat().st_size <= LIMITS['file_mib'] * 2 ** 20 for f in files)
        assert sum(f.stat().st_size for f in files) <= LIMITS['total_mib'] * 2 ** 20
        if 'complete' in printed:
            break
        assert 'left out' in printed
    assert 1 < len(volumes) < 12
    assert any('.part' in f.name for v in volumes for f in v.iterdir())
    manifest = json.loads(next(volumes[0].glob('manifest-v*.json')).read_text())
    assert {r['name']: r['epoch_time_s'] for r in manifest['status']} == \
        {name: r['epoch_time_s'] for name, r in records.items()}

    back = tmp_path / 'back'
    launch('unpack', *volumes, '--runs-dir', back)
    weights = Path('resnet20/export/model.safetensors')
    checkpoint = Path('xresnet20/checkpoints') / records['xresnet20']['latest_checkpoint']
    for rel in (weights, checkpoint, Path('resnet20/metrics.csv'), Path('xresnet20/train.log')):
        assert (back / rel).read_bytes() == (runs / rel).read_bytes(), rel
    assert not (back / 'resnet20' / 'checkpoints').exists()  # a finished run ships its export only
    unpacked = status(back)
    assert unpacked['resnet20']['state'] == 'finished' and unpacked['xresnet20']['state'] == 'unfinished'

    hub = tmp_path / 'hub'
    launch_export = subprocess.run([sys.executable, '-m', 'cifar_timm', 'export', str(back / 'resnet20'),
                                    '--hub-dir', str(hub), '--tags-file', str(tmp_path / 'tags.json')],
                                   cwd=REPO, capture_output=True, text=True, timeout=300)
    assert launch_export.returncode == 0, launch_export.stderr
    assert sha256(hub / 'resnet20.c10' / 'model.safetensors') == sha256(runs / weights)
    assert (hub / 'resnet20.c10' / 'README.md').is_file()

    # A later session: the checkpoint travels in a pack of its own and resumes (resume=auto) to the end.
    carry = tmp_path / 'carry'
    launch('pack', carry, '--runs-dir', back, '--checkpoints-only', '--all')
    assert not [f for f in carry.iterdir() if 'model.safetensors' in f.name]
    assert [f for f in carry.iterdir() if checkpoint.name in f.name]
    target = records['xresnet20']['epochs_done'] + 1
    launch('start', 'xresnet20', '--runs-dir', back, '--data-dir', cifar_root, *TINY,
           '--set-for', 'xresnet20', f'epochs={target}')
    done = wait_until(lambda r: r['xresnet20']['state'] in ('finished', 'failed'), back)
    assert done['xresnet20']['state'] == 'finished' and done['xresnet20']['epochs_done'] == target
    assert f'resumed from {back / checkpoint}' in (back / 'xresnet20' / 'train.log').read_text()


def test_bad_input_fails_before_anything_starts(runs, cifar_root, tmp_path):
    result = launch('start', 'resnet20', '--runs-dir', runs, '--data-dir', cifar_root, '--set', 'epochz=1',
                    check=False)
    assert result.returncode == 2 and '`epochz`' in result.stderr and 'Traceback' not in result.stderr
    result = launch('start', 'resnet20', '--runs-dir', runs, '--data-dir', tmp_path / 'nothing', check=False)
    assert result.returncode == 2 and 'build.py' in result.stderr
    result = launch('start', 'resnet2O', '--runs-dir', runs, '--data-dir', cifar_root, check=False)
    assert result.returncode == 2 and 'resnet20' in result.stderr
    assert not (runs / 'launcher.json').exists()
    result = launch('unpack', tmp_path, '--runs-dir', runs, check=False)
    assert result.returncode == 2 and 'manifest' in result.stderr


def test_stop_after_checkpoints_every_run(runs, cifar_root):
    launch('start', 'resnet20', '--runs-dir', runs, '--data-dir', cifar_root, *TINY, '--set', 'epochs=1000',
           '--stop-after', '0.1')
    records = wait_until(lambda r: r['resnet20']['state'] not in ('queued', 'running'), runs)
    assert records['resnet20']['state'] == 'stopped' and records['resnet20']['latest_checkpoint']
    assert records['resnet20']['epochs_done'] < 1000


def test_queue_file_runs_named_runs_one_at_a_time_and_exports_them(runs, cifar_root, tmp_path):
    """The CPU campaign: a queue file names each run <model>.<tag>; one recipe may run under two names; `export`
    publishes every finished one under its tag, and a second `export` has nothing new to do."""
    queue = tmp_path / 'queue.yaml'
    queue.write_text('sets: [data.verify_md5=false]\n'
                     'runs:\n  - {run: resnet20.t_a, recipe: resnet20}\n  - {run: resnet20.t_b, recipe: resnet20}\n')
    pairs = [TINY[i:i + 2] for i in range(0, len(TINY), 2)]
    tiny = [item for pair in pairs if pair[1] != 'data.verify_md5=false' for item in pair]  # the queue sets it
    launch('start', '--queue', queue, '--runs-dir', runs, '--data-dir', cifar_root, *tiny,
           '--set-for', 'resnet20.t_b', 'seed=1')
    records = wait_until(lambda r: all(x['state'] in ('finished', 'failed') for x in r.values()), runs)
    assert [records[n]['state'] for n in ('resnet20.t_a', 'resnet20.t_b')] == ['finished', 'finished']
    assert records['resnet20.t_a']['concurrency'] == 1  # the CPU default: one training at a time
    log = (runs / 'launcher.log').read_text()
    assert log.index('resnet20.t_a finished') < log.index('resnet20.t_b started')

    env = {'CIFAR_TIMM_HUB_DIR': str(tmp_path / 'hub'), 'CIFAR_TIMM_PRETRAINED_TAGS': str(tmp_path / 'tags.json')}
    printed = launch('export', '--runs-dir', runs, env=env).stdout
    assert 'exported resnet20.t_a' in printed and 'exported resnet20.t_b' in printed
    tags = json.loads((tmp_path / 'tags.json').read_text())
    assert set(tags) == {'resnet20.t_a', 'resnet20.t_b'}
    assert tags['resnet20.t_a']['sha256'] == sha256(runs / 'resnet20.t_a' / 'export' / 'model.safetensors')
    assert 'nothing new to export' in launch('export', '--runs-dir', runs, env=env).stdout

    # a new machine has lost the runs folder: what hub/ holds is not trained again, unless asked by name
    fresh = tmp_path / 'fresh_runs'
    printed = launch('start', '--queue', queue, '--runs-dir', fresh, '--data-dir', cifar_root, *tiny, env=env).stdout
    assert 'skipping 2 runs already published' in printed and '0 runs queued' in printed
    records = wait_until(lambda r: all(x['state'] == 'published' for x in r.values()), fresh)
    published = json.loads((tmp_path / 'hub' / 'resnet20.t_a' / 'results.json').read_text())
    assert records['resnet20.t_a']['top1_exact'] == published['top1_exact']
    assert not (fresh / 'resnet20.t_a').exists()
    assert re.search(r'resnet20\.t_a +published +epoch +-/', launch('status', '--runs-dir', fresh).stdout)
    launch('start', '--queue', queue, '--runs-dir', fresh, '--data-dir', cifar_root, *tiny, '--retrain',
           'resnet20.t_b', env=env)
    records = wait_until(lambda r: r['resnet20.t_b']['state'] in ('finished', 'failed'), fresh)
    assert [records[n]['state'] for n in ('resnet20.t_a', 'resnet20.t_b')] == ['published', 'finished']
    result = launch('start', '--queue', queue, '--runs-dir', tmp_path / 'other', '--data-dir', cifar_root,
                    '--retrain', 'resnet20.nope', check=False, env=env)
    assert result.returncode == 2 and '--retrain resnet20.nope' in result.stderr

    bad = tmp_path / 'bad.yaml'
    bad.write_text('runs:\n  - resnet20\n')
    result = launch('start', '--queue', bad, '--runs-dir', tmp_path / 'other', '--data-dir', cifar_root, check=False)
    assert result.returncode == 2 and '{run: NAME, recipe: RECIPE}' in result.stderr


def test_status_estimates_a_queued_runs_eta_from_another_run_of_its_model(runs):
    """Planning a campaign across sessions: a run that has not started yet gets an ETA from the epochs of another run
    of the same architecture here (marked ~), and a last line sums what is left."""
    runs.mkdir()
    entries = [{'name': 'resnet20.short_c10', 'model': 'resnet20', 'epochs': 30},
               {'name': 'resnet20.he_c10', 'model': 'resnet20', 'epochs': 180},
               {'name': 'vgg7_bn.short_c10', 'model': 'vgg7_bn', 'epochs': 30},
               # a teacher's forward passes make a distilled run slower than its plain twin: no estimate from it
               {'name': 'resnet20.short_kd_c10', 'model': 'resnet20', 'epochs': 30, 'teacher': 'resnet56.c10'},
               {'name': 'resnet20.short_ens_c10', 'model': 'resnet20', 'epochs': 30,
                'teacher': ['resnet56.c10', 'resnet44.c10']}]
    (runs / 'launcher.json').write_text(json.dumps({'runs': entries}))
    metrics = runs / 'resnet20.short_c10' / 'metrics.csv'
    metrics.parent.mkdir()
    metrics.write_text('epoch,val_top1,epoch_time_s\n0,40.0,50.0\n1,50.0,40.0\n2,60.0,40.0\n')
    records = status(runs)
    short, he, vgg = records['resnet20.short_c10'], records['resnet20.he_c10'], records['vgg7_bn.short_c10']
    assert (short['eta_s'], short['eta_estimated']) == (40.0 * 27, False)  # its own median epoch
    assert (he['eta_s'], he['eta_estimated']) == (40.0 * 180, True)
    assert vgg['eta_s'] is None  # no vgg7_bn epoch timed here
    assert records['resnet20.short_kd_c10']['eta_s'] is None and records['resnet20.short_ens_c10']['eta_s'] is None
    printed = launch('status', '--runs-dir', runs).stdout
    assert 'eta ~ 120.0 min' in printed
    assert 'left: 5 runs, 2.3 h of training for 2 of them' in printed and '3 not timed yet' in printed
