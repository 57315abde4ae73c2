"""What a shorter recipe costs: the published weights of one architecture side by side, each against the one trained
longest, on the same images (the 1,017 exact test images, all 10,000, the 5,000 validation images).

`cifar-timm tables --write` puts these tables into docs/results.md (every architecture with more than one weight)
and into each such weight's model card (its own architecture), so a user choosing between `resnet20.he_c10` and
`resnet20.short_c10` sees what the cheaper recipe gave up and what it saved. The numbers are the records'
(`pretrained_tags.json`); the recipe line is read from each weight's `hub/<name>/results.json` (`read_recipe`, once per
weight: the tables take the lines as a `{name: line}` dict).
"""
from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path
from typing import Any, Optional

from ._format import hours, number, top1_with_ci

# timm optimizer names as a reader knows them (timm's `sgd` is Nesterov; `momentum` is classical momentum)
OPTIMIZER_NAMES = {'sgd': 'SGD Nesterov', 'nesterov': 'SGD Nesterov', 'momentum': 'SGD momentum', 'adamw': 'AdamW',
                   'adam': 'Adam', 'lamb': 'LAMB', 'lars': 'LARS'}


def recipe_line(config: dict[str, Any]) -> str:
    """A run's training recipe in one line, from its resolved config (results.json `config`)."""
    opt, sched = config.get('optimizer') or {}, config.get('scheduler') or {}
    name = str(opt.get('name', '?'))
    lookahead = name.startswith('lookahead_')
    name = name.removeprefix('lookahead_')
    parts = [f"{'Lookahead ' if lookahead else ''}{OPTIMIZER_NAMES.get(name, name)} lr {_g(opt.get('lr'))}, "
             f"weight decay {_g(opt.get('weight_decay', 0))}, batch {config.get('batch_size', '?')}"]
    schedule = str(sched.get('name', 'none'))
    if schedule == 'multistep' and sched.get('milestones'):
        schedule += f" (x{sched.get('decay_rate', 0.1):g} at epochs {', '.join(str(m) for m in sched['milestones'])})"
    if sched.get('warmup_epochs'):
        schedule += f", {sched['warmup_epochs']} warm-up epochs"
    parts.append(schedule)
    if (config.get('loss') or {}).get('label_smoothing'):
        parts.append(f"label smoothing {config['loss']['label_smoothing']:g}")
    mixup = (config.get('mixup') or {}).get('name', 'none')
    if mixup != 'none':
        parts.append({'timm': 'Mixup/CutMix', 'label_preserving': 'label-preserving mixup'}.get(mixup, mixup))
    if (config.get('data') or {}).get('cutout'):
        parts.append(f"cutout {config['data']['cutout']}")
    ema = config.get('ema') or {}
    if ema.get('enabled'):
        parts.append(f"EMA {_g(ema.get('decay'))}" + (' (exported)' if ema.get('export', True) else ''))
    teacher = (config.get('distill') or {}).get('teacher')
    if teacher:
        parts.append(f'distilled from {teacher if isinstance(teacher, str) else " + ".join(teacher)}')
    return '; '.join(parts)


def read_recipe(hub: Path, name: str) -> Optional[str]:
    """The recipe line of a published weight, from its Hub folder's results.json (None when there is none)."""
    path = hub / name / 'results.json'
    if not path.is_file():
        return None
    config = json.loads(path.read_text()).get('config')
    return recipe_line(config) if config else None


def by_architecture(weights: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The architectures with two or more published weights, each list longest-trained first (the reference)."""
    ordered = sorted(weights, key=lambda w: (w['model'], -(w['epochs'] or 0), w['name']))
    groups = {model: list(group) for model, group in groupby(ordered, key=lambda w: w['model'])}
    return {model: group for model, group in groups.items() if len(group) > 1}


def costs_table(group: list[dict[str, Any]], recipes: dict[str, Optional[str]], this: Optional[str] = None) -> str:
    """One architecture's weights, each with its differences to the first (the longest-trained) on the same images."""
    reference = group[0]
    lines = ['| weight | recipe | epochs | training time | exact test top-1 % [95% CI] | Δ exact | all 10,000 % | '
             'Δ all | validation % | Δ validation |',
             '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for w in group:
        label = f"`{w['name']}`" + (' (this weight)' if w['name'] == this else '')
        is_reference = w is reference
        lines.append(
            f"| {label} | {recipes.get(w['name']) or '–'} | {w['epochs'] or '–'} | {_time(w)} | "
            f"{top1_with_ci(w)} | {_delta(w, reference, 'top1_exact', is_reference)} | {number(w['top1_test'])} | "
            f"{_delta(w, reference, 'top1_test', is_reference)} | {number(w['top1_val'])} | "
            f"{_delta(w, reference, 'top1_val', is_reference)} |")
    return '\n'.join(lines)


def results_section(weights: list[dict[str, Any]], recipes: dict[str, Optional[str]]) -> str:
    """docs/results.md's comparison: one table per architecture with more than one weight."""
    groups = by_architecture(weights)
    if not groups:
        return 'No architecture has more than one published weight yet.'
    return '\n\n'.join(f"**{model}**: differences against `{group[0]['name']}`\n\n{costs_table(group, recipes)}"
                       for model, group in groups.items())


def card_section(name: str, weights: list[dict[str, Any]], recipes: dict[str, Optional[str]]) -> str:
    """A model card's comparison with the other weights of its architecture ('' when it has none)."""
    model = next((w['model'] for w in weights if w['name'] == name), None)
    group = by_architecture(weights).get(model)
    if not group:
        return ''
    return f'''## Other weights of this architecture
The published `{model}` weights, each against `{group[0]['name']}` (the longest-trained) on the same images: what a
shorter recipe gives up and what it saves. Training times are each run's own, on the hardware its card names.

{costs_table(group, recipes, this=name)}'''


def _delta(w: dict[str, Any], reference: dict[str, Any], key: str, is_reference: bool) -> str:
    if is_reference:
        return 'reference'
    if w[key] is None or reference[key] is None:
        return '–'
    return f'{w[key] - reference[key]:+.2f}'


def _time(w: dict[str, Any]) -> str:
    if w['train_time_s'] is None:
        return '–'
    return hours(w['train_time_s']) + (f" on {w['hardware']}" if w['hardware'] else '')


def _g(value: Any) -> str:
    """A config number as written in a YAML recipe (0.0005, 0.1); '?' when the config lacks it."""
    return '?' if value is None else f'{value:g}'

