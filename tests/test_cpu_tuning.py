"""The trainer's CPU settings: 'auto' precision and memory format, the allocator setting, and the thread governor
yielding a core to a real busy process and taking it back when that process ends."""
import os
import subprocess
import sys
import time

import pytest
import torch

from cifar_timm.training import load_config
from cifar_timm.training.config import ConfigError
from cifar_timm.training.cpu import (ThreadGovernor, cpu_has_native_bf16, keep_freed_memory, resolve_channels_last,
                                     resolve_mixed_precision)

SPINNER = [sys.executable, '-c', 'import time\nend = time.time() + 30\nwhile time.time() < end: pass']  # 30 s busy

CPU = torch.device('cpu')


def test_auto_resolves_to_the_machines_best_and_explicit_values_win():
    assert resolve_mixed_precision('auto', CPU) == ('bf16' if cpu_has_native_bf16() else 'no')
    assert resolve_mixed_precision('no', CPU) == 'no' and resolve_mixed_precision('bf16', CPU) == 'bf16'
    assert resolve_channels_last('auto', CPU) is True and resolve_channels_last(False, CPU) is False


def test_recipes_default_to_auto_and_cpu_threads_are_checked():
    config = load_config('recipes/configs/resnet20.yaml')
    assert (config['mixed_precision'], config['channels_last'], config['cpu_threads']) == ('auto', 'auto', 'auto')
    assert load_config('recipes/configs/resnet20.yaml', ['cpu_threads=1'])['cpu_threads'] == 1
    for bad in ('0', 'many', 'true'):
        with pytest.raises(ConfigError, match='cpu_threads'):
            load_config('recipes/configs/resnet20.yaml', [f'cpu_threads={bad}'])
    with pytest.raises(ConfigError, match='channels_last'):
        load_config('recipes/configs/resnet20.yaml', ['channels_last=sometimes'])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='mallopt is glibc')
def test_freed_memory_is_kept_on_linux():
    assert keep_freed_memory()


# A process that frees a 64 MiB tensor it wrote, then prints how much of it is still resident (MiB).
_RESIDENT_AFTER_FREE = '''
import os, sys, torch
from cifar_timm.training.cpu import keep_freed_memory
if sys.argv[1] == 'keep':
    keep_freed_memory()
def resident_mib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
before = resident_mib()
x = torch.ones(16 * 2 ** 20)
del x
print(resident_mib() - before)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='mallopt and /proc are Linux')
def test_kept_memory_stays_resident_after_a_free_and_the_systems_setting_returns_it():
    def resident_after_free(mode: str) -> float:
        done = subprocess.run([sys.executable, '-c', _RESIDENT_AFTER_FREE, mode], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.split()[-1])
    assert resident_after_free('keep') > 48      # in the heap: the next step reuses it without page faults
    assert resident_after_free('system') < 16    # glibc unmapped it (over its mmap threshold)


def test_cpu_allocator_is_checked():
    assert load_config('recipes/configs/resnet20.yaml')['cpu_allocator'] == 'keep'
    assert load_config('recipes/configs/resnet20.yaml', ['cpu_allocator=system'])['cpu_allocator'] == 'system'
    with pytest.raises(ConfigError, match='cpu_allocator.*one of keep, system'):
        load_config('recipes/configs/resnet20.yaml', ['cpu_allocator=fast'])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason='needs 2 or more cores')
@pytest.mark.skipif(not ThreadGovernor().available, reason='no /proc/stat')
def test_governor_yields_a_core_to_a_busy_process_and_takes_it_back():
    cores = os.cpu_count()
    torch.set_num_threads(cores)  # whatever an earlier test in this process left (conftest restores it after)
    governor = ThreadGovernor(min_window_s=1.0)
    spinner = subprocess.Popen(SPINNER)
    try:
        time.sleep(1.5)
        assert governor.update() == cores - 1 == torch.get_num_threads()
    finally:
        spinner.kill()
        spinner.wait()
    time.sleep(1.5)
    assert governor.update() == cores == torch.get_num_threads()


def test_governor_waits_for_its_window_before_changing_anything():
    governor = ThreadGovernor(min_window_s=60.0)
    assert governor.other_load() is None and governor.update() == governor.max_threads


def test_a_run_gives_back_the_thread_count_it_found(cifar_root, tmp_path):
    from cifar_timm.training import train
    torch.set_num_threads(2)  # conftest restores the count after the test, whatever train() does
    train(load_config('recipes/configs/resnet20.yaml', [
        f'data.dir={cifar_root}', 'data.verify_md5=false', 'data.limit=32', 'data.val_limit=16',
        'data.test_limit=16', 'batch_size=16', 'epochs=1', f'output={tmp_path / "run"}', 'log.progress=false',
        'log.tensorboard=false', 'cpu_threads=1']))
    assert torch.get_num_threads() == 2  # the next test (or notebook cell) gets the process it had


@pytest.mark.parametrize('allocator,kept', [('keep', True), ('system', False)])
def test_the_trainer_sets_the_allocator_the_config_asks_for(allocator, kept, cifar_root, tmp_path, monkeypatch):
    from cifar_timm.training import loop, train
    calls = []
    monkeypatch.setattr(loop, 'keep_freed_memory', lambda: calls.append(True) or True)
    train(load_config('recipes/configs/resnet20.yaml', [
        f'data.dir={cifar_root}', 'data.verify_md5=false', 'data.limit=32', 'data.val_limit=16', 'data.test_limit=16',
        'batch_size=16', 'epochs=1', f'output={tmp_path / "run"}', 'log.progress=false', 'log.tensorboard=false',
        f'cpu_allocator={allocator}']))
    assert bool(calls) is kept
    import yaml
    assert yaml.safe_load((tmp_path / 'run' / 'config.yaml').read_text())['cpu_allocator'] == allocator  # recorded
