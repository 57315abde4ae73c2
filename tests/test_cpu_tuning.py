"""The trainer's CPU settings: 'auto' precision and memory format, the allocator setting, and the thread governor
yielding a core to a real busy process and taking it back when that process ends."""
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


@pytest.mark.skipif(torch.get_num_threads() < 2, reason='needs 2 or more torch threads')
@pytest.mark.skipif(not ThreadGovernor().available, reason='no /proc/stat')
def test_governor_yields_a_core_to_a_busy_process_and_takes_it_back():
    before = torch.get_num_threads()
    governor = ThreadGovernor(min_window_s=1.0)
    spinner = subprocess.Popen(SPINNER)
    try:
        time.sleep(1.5)
        assert governor.update() == before - 1 == torch.get_num_threads()
    finally:
        spinner.kill()
        spinner.wait()
    try:
        time.sleep(1.5)
        assert governor.update() == before == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_governor_waits_for_its_window_before_changing_anything():
    governor = ThreadGovernor(min_window_s=60.0)
    assert governor.other_load() is None and governor.update() == governor.max_threads
