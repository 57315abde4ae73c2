"""How the generated tables write a number: two decimals, '–' for a missing one."""
from __future__ import annotations

from typing import Any, Optional


def number(value: Optional[float]) -> str:
    return '–' if value is None else f'{value:.2f}'


def top1_with_ci(weight: dict[str, Any]) -> str:
    """A weight's top-1 on the exact test images with its 95% interval, e.g. `91.60 [89.7, 93.2]`."""
    ci = weight.get('top1_exact_ci95')
    interval = ' [{:.1f}, {:.1f}]'.format(*ci) if ci else ''
    return f"{number(weight['top1_exact'])}{interval}"


def hours(seconds: Optional[float]) -> str:
    return '–' if seconds is None else f'{seconds / 3600:.2f} h'
