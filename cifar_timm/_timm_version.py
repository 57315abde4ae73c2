"""The oldest timm this package works with, checked at import. pip enforces it on install, but a checkout used
through PYTHONPATH (a lent GPU machine, a vendored copy) meets whatever timm is there, and an older one would
fail deep inside a training run or an export instead of here."""
from __future__ import annotations

import re

MIN_TIMM = (1, 0, 27)  # the same floor as pyproject.toml (tests/test_versions.py keeps them in step)


def check_timm_version(version: str) -> None:
    found = tuple(int(part) for part in re.findall(r'\d+', version)[:3])
    if found < MIN_TIMM:
        floor = '.'.join(map(str, MIN_TIMM))
        raise ImportError(f'cifar-timm needs timm >= {floor}, but timm {version} is installed: '
                          f'upgrade it with `pip install -U "timm>={floor}"`')
