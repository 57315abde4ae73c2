"""The processor facts benchmarks and the grouped-conv rule read from /proc/cpuinfo, on cpuinfo files of known CPUs."""
from __future__ import annotations

import pytest

from cifar_timm.cpuinfo import amd_zen_generation, cpu_has_flag, cpuinfo_fields


def _cpuinfo(tmp_path, vendor: str, family: int, model: int, flags: str, name: str = 'AMD EPYC') -> str:
    block = (f'processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n'
             f'model name\t: {name}\nflags\t\t: fpu sse2 {flags}\n\n')
    path = tmp_path / f'cpuinfo-{vendor}-{family}-{model}-{len(flags)}'
    path.write_text(block.format(n=0) + block.format(n=1).replace(flags, ''))  # only the first block counts
    return str(path)


@pytest.mark.parametrize('vendor,family,model,flags,generation', [
    ('AuthenticAMD', 25, 17, 'avx2 avx512f avx512_bf16', 'Zen 4'),   # this project's Genoa VMs
    ('AuthenticAMD', 25, 1, 'avx2', 'Zen 3'),                         # the AVX2-only EPYC
    ('AuthenticAMD', 26, 2, 'avx2 avx512f avx512_bf16', 'Zen 5'),
    ('AuthenticAMD', 23, 49, 'avx2', 'Zen 2'),
    ('GenuineIntel', 6, 143, 'avx512f amx_bf16', ''),                 # Intel names its models; nothing to add
])
def test_amd_generations_come_from_the_family(tmp_path, vendor, family, model, flags, generation):
    path = _cpuinfo(tmp_path, vendor, family, model, flags)
    assert amd_zen_generation(path) == generation
    assert cpuinfo_fields(path)['model name'] == 'AMD EPYC'


def test_flags_are_whole_words_of_the_first_processor(tmp_path):
    path = _cpuinfo(tmp_path, 'GenuineIntel', 6, 143, 'avx512f amx_bf16 amx_tile')
    assert cpu_has_flag('amx_bf16', path) and cpu_has_flag('avx512f', path)
    assert not cpu_has_flag('amx', path) and not cpu_has_flag('avx512', path)


def test_a_machine_without_cpuinfo_says_nothing(tmp_path):
    missing = str(tmp_path / 'absent')
    assert cpuinfo_fields(missing) == {} and not cpu_has_flag('avx2', missing) and amd_zen_generation(missing) == ''
