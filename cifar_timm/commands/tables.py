"""`cifar-timm tables [--write]`: README.md's model table, docs/results.md's table of published weights and its
comparison of recipes, and each model card's comparison with the other weights of its architecture, generated from
the records, never typed by hand.

Each table sits between a `<!-- BEGIN name ... -->` and an `<!-- END name -->` line of its file; only the text between
them is replaced. The numbers come from the registry (params and MACs as `cifar-timm list` counts them), the
sources' reported top-1 (`SOURCE_RESULTS`) and `pretrained_tags.json` (what `cifar-timm export` records for each
published weight). Without `--write` the command only says whether the files agree with the records (exit 1 when
not); tests/test_zoo_docs.py runs that check.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable, Optional

import timm

from ..constants import CIFAR10_NAME, EXACT_TEST_SLICE
from ..errors import CifarTimmError
from ..hub import checkout_dir, write_text_atomic
from ._format import hours, number, top1_with_ci
from .list_models import architectures, published_weights
from .recipe_costs import card_section, read_recipe, results_section

HELP = 'Regenerate the model table in README.md and the results in docs/results.md from the published records.'

# The project each architecture comes from, by its pretrained cfg's origin_url, in the order the table lists them.
# An origin not named here is shown as its URL's owner/repo, after these.
SOURCE_PROJECTS = {
    'https://github.com/akamaster/pytorch_resnet_cifar10': 'He et al. 2015, option A',
    'https://github.com/fattorib/ResNets-CIFAR10': 'fattorib/ResNets-CIFAR10 (downsampling at stage ends)',
    'https://github.com/iamVarunAnand/image_classification': 'bag of tricks (iamVarunAnand)',
    'https://github.com/theabhirath/cifar10-experiments': 'cifar10-experiments (theabhirath)',
    'https://github.com/culpritgene/fineopia': 'Stepik report (fineopia)',
    'https://github.com/Nikunj-Gupta/Efficient_ResNets': 'Efficient ResNets (arXiv:2306.12100)',
    'https://github.com/pytorch/vision': 'common baseline',
}
N_EXACT = EXACT_TEST_SLICE.stop - EXACT_TEST_SLICE.start
# The model card's section comparing a weight with the others of its architecture (recipe_costs.card_section).
CARD_SECTION = 'other-weights'
# Sections a file may lack (cards exported before the section existed, or with nothing to compare yet): they are
# inserted before this heading the first time they have something to say.
INSERT_MISSING_BEFORE = {CARD_SECTION: '## Training data'}


class TablesError(CifarTimmError):
    """A generated file or its markers cannot be found."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--write', action='store_true', help='rewrite the generated sections (default: only check)')
    parser.add_argument('--root', type=Path, default=None,
                        help='checkout holding README.md and docs/ (default: the one this package runs from)')


def run(args: argparse.Namespace) -> int:
    root = args.root or checkout_dir()
    if root is None:
        raise TablesError('this cifar-timm is an installed package, not a checkout: pass --root with the folder '
                          'that holds README.md and docs/results.md')
    stale = update_generated(Path(root), write=args.write)
    if args.write:
        print(f'rewrote {", ".join(stale)}' if stale else 'every generated section already agrees with the records')
        return 0
    if stale:
        print(f'out of date with pretrained_tags.json: {", ".join(stale)}; run `cifar-timm tables --write`')
        return 1
    print('README.md and docs/results.md agree with the records')
    return 0


def update_generated(root: Path, write: bool = False) -> list[str]:
    """The `file: section` names whose text differs from what the records give; rewritten with `write`."""
    weights = [w for w in published_weights([]) if w['dataset'] == CIFAR10_NAME]
    hub = root / 'hub'
    recipes = {w['name']: read_recipe(hub, w['name']) for w in weights}  # each results.json read once
    renderers: dict[str, dict[str, Callable[[], str]]] = {
        'README.md': {'models': lambda: models_table(architectures([]), weights)},
        'docs/results.md': {'results': lambda: results_table(weights),
                            'recipes': lambda: results_section(weights, recipes)},
    }
    for w in weights:  # each model card compares its weight with the others of its architecture
        if (hub / w['name'] / 'README.md').is_file():
            renderers[f"hub/{w['name']}/README.md"] = {
                CARD_SECTION: lambda name=w['name']: card_section(name, weights, recipes)}
    stale = []
    for relative, sections in renderers.items():
        path = root / relative
        if not path.is_file():
            raise TablesError(f'{path} does not exist: run from a cifar-timm checkout (or pass --root)')
        text = original = path.read_text()
        for name, render in sections.items():
            text, changed = replace_section(text, name, render(), path, INSERT_MISSING_BEFORE.get(name))
            if changed:
                stale.append(f'{relative}: {name}')
        if write and text != original:
            write_text_atomic(path, text)
    return stale


def replace_section(text: str, name: str, body: str, path: Optional[Path] = None,
                    insert_before: Optional[str] = None) -> tuple[str, bool]:
    """`text` with the lines between its `<!-- BEGIN name` and `<!-- END name -->` lines replaced by `body`.

    With `insert_before` (a line prefix, e.g. a heading), a text without the section gets it before that line (or at
    the end) once `body` has something to say, and is left as it is while `body` is empty."""
    pattern = re.compile(rf'(^<!-- BEGIN {re.escape(name)}\b[^\n]*-->\n)(.*?)(^<!-- END {re.escape(name)} -->$)',
                         re.M | re.S)
    matches = list(pattern.finditer(text))
    body = body.rstrip('\n') + '\n'
    if not matches and insert_before is not None:
        if not body.strip():
            return text, False
        anchor = text.find(f'\n{insert_before}')
        at = anchor + 1 if anchor >= 0 else len(text)
        return text[:at] + f'{_begin_line(name)}\n{body}<!-- END {name} -->\n\n' + text[at:], True
    if len(matches) != 1:
        where = path or 'the text'
        raise TablesError(f'{where} has {len(matches)} `{name}` sections; it needs exactly one, between a line '
                          f'`{_begin_line(name)}` and a line `<!-- END {name} -->`')
    m = matches[0]
    return text[:m.start(2)] + body + text[m.end(2):], m.group(2) != body


def _begin_line(name: str) -> str:
    return f'<!-- BEGIN {name} (generated by `cifar-timm tables --write`) -->'


def source_project(name: str) -> str:
    """The project an architecture comes from, as the model table names it."""
    url = timm.models.get_pretrained_cfg(name).origin_url or ''
    return SOURCE_PROJECTS.get(url) or '/'.join(url.rstrip('/').split('/')[-2:]) or '–'


def models_table(archs: list[dict[str, Any]], weights: list[dict[str, Any]]) -> str:
    """README's table: one row per architecture, grouped by source project, with its published weights."""
    order = {label: i for i, label in enumerate(SOURCE_PROJECTS.values())}
    rows = sorted(((source_project(a['name']), i, a) for i, a in enumerate(archs)),
                  key=lambda r: (order.get(r[0], len(order)), r[0], r[1]))
    lines = [f'| model | source | params | MACs (32x32) | source top-1 % | weights: top-1 % on the {N_EXACT:,} exact '
             f'test images [95% CI] |',
             '| --- | --- | ---: | ---: | ---: | --- |']
    for source, _, a in rows:
        published = [w for w in weights if w['model'] == a['name']]
        cell = ', '.join(f"`{w['name']}` {top1_with_ci(w)}" for w in published) or 'not yet'
        lines.append(f"| `{a['name']}` | {source} | {a['params']:,} | {a['macs'] / 1e6:.2f}M | "
                     f"{number(a['source_top1'])} | {cell} |")
    return '\n'.join(lines)


def results_table(weights: list[dict[str, Any]]) -> str:
    """docs/results.md's table: every published CIFAR-10 weight with what its run measured."""
    if not weights:
        return ('No weights are published yet: `cifar_timm/models/pretrained_tags.json` records none. Each '
                '`cifar-timm export RUN_DIR` adds one; then `cifar-timm tables --write` and '
                '`cifar-timm plot --output docs/zoo.png` bring this page, the README and the plot up to date.')
    from ..models import SOURCE_RESULTS
    lines = [f'| weight | params | MACs | top-1 % exact test images [95% CI] | top-1 % all test images | '
             f'source top-1 % | val top-1 % | epochs | training time | hardware |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    for w in weights:
        source = SOURCE_RESULTS.get(w['model'])
        lines.append(
            f"| `{w['name']}` | {_count(w['params'])} | {_mega(w['macs'])} | {top1_with_ci(w)} | "
            f"{number(w['top1_test'])} | {number(source.top1 if source else None)} | {number(w['top1_val'])} | "
            f"{w['epochs'] if w['epochs'] is not None else '–'} | {hours(w['train_time_s'])} | {w['hardware'] or '–'} |")
    return '\n'.join(lines)


def _count(value: Optional[int]) -> str:
    return '–' if value is None else f'{value:,}'


def _mega(value: Optional[int]) -> str:
    return '–' if value is None else f'{value / 1e6:.2f}M'
