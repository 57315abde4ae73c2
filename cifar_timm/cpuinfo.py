"""What the OS says about the processor (Linux: /proc/cpuinfo; elsewhere nothing, and callers fall back).

A CPU's training speed depends on its vector units more than on its name, and a cloud VM often shows only
"AMD EPYC": the family number is what tells a Zen 4 (AVX-512 split into two 256-bit halves) from a Zen 5 (full
512-bit units, about twice the bf16 throughput a core)."""
from __future__ import annotations

import functools

CPUINFO = '/proc/cpuinfo'


@functools.lru_cache(maxsize=None)
def cpuinfo_fields(path: str = CPUINFO) -> dict[str, str]:
    """The first processor's `key: value` lines (values with their whitespace collapsed); {} where unreadable."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the next processor's block: the cores of one machine are alike
                    continue
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), ' '.join(value.split()))
    except OSError:
        pass
    return fields


@functools.lru_cache(maxsize=None)  # asked on every grouped conv call (the merge rule)
def cpu_has_flag(flag: str, path: str = CPUINFO) -> bool:
    """Whether the CPU lists `flag` (e.g. 'amx_bf16', 'avx512_bf16'); False where the OS does not say."""
    return flag in cpuinfo_fields(path).get('flags', '').split()


def amd_zen_generation(path: str = CPUINFO) -> str:
    """'Zen 4', 'Zen 5'... for an AMD processor, from its family (and, within family 25, AVX-512); '' otherwise."""
    fields = cpuinfo_fields(path)
    if fields.get('vendor_id') != 'AuthenticAMD':
        return ''
    try:
        family, model = int(fields['cpu family']), int(fields['model'])
    except (KeyError, ValueError):
        return ''
    if family == 23:
        return 'Zen 2' if model >= 0x30 else 'Zen'
    if family == 25:  # Zen 3 and Zen 4 share it; Zen 4 is the one with AVX-512
        return 'Zen 4' if cpu_has_flag('avx512f', path) else 'Zen 3'
    if family == 26:
        return 'Zen 5'
    return ''
