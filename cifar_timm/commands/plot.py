"""`cifar-timm plot`: the zoo at a glance, as a PNG: top-1 against params and against MACs.

One filled point per published CIFAR-10 weight (its top-1 on the exact test images 0-1016, with the 95% Wilson
interval as an error bar, from `pretrained_tags.json`), and one hollow marker per architecture whose source project
reports a top-1 (`SOURCE_RESULTS`), at the same params and MACs, so each of ours sits beside the number it is
compared with. The points drawn are stored in the PNG itself (text chunk `cifar-timm:points`, JSON), which is how
tests/test_zoo_docs.py checks the committed docs/zoo.png against the records.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from ..constants import CIFAR10_NAME, EXACT_TEST_SLICE
from ..errors import CifarTimmError
from ..hub import write_bytes_atomic
from .list_models import architectures, published_weights

HELP = 'Draw top-1 against params and MACs for the published weights and the sources\' numbers (a PNG).'

POINTS_KEY = 'cifar-timm:points'  # PNG text chunk holding the drawn points as JSON
N_EXACT = EXACT_TEST_SLICE.stop - EXACT_TEST_SLICE.start
OURS_COLOR, SOURCE_COLOR = 'tab:blue', 'tab:orange'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--output', '-o', type=Path, default=Path('zoo.png'),
                        help='PNG to write (default zoo.png; the docs show docs/zoo.png)')


def run(args: argparse.Namespace) -> int:
    points = zoo_points()
    write_plot(points, args.output)
    ours = sum(p['kind'] == 'ours' for p in points)
    print(f'wrote {args.output}: {ours} published weights, {len(points) - ours} source numbers')
    return 0


def zoo_points() -> list[dict[str, Any]]:
    """What the plot draws: `ours` per published CIFAR-10 weight, `source` per architecture with a reported top-1."""
    points = []
    for w in published_weights([]):
        if w['dataset'] == CIFAR10_NAME and w['top1_exact'] is not None:
            points.append(dict(kind='ours', name=w['name'], model=w['model'], params=w['params'], macs=w['macs'],
                               top1=w['top1_exact'], ci95=list(w['top1_exact_ci95'] or [])))
    for a in architectures([]):
        if a['source_top1'] is not None:
            points.append(dict(kind='source', name=a['name'], model=a['name'], params=a['params'], macs=a['macs'],
                               top1=a['source_top1'], ci95=[]))
    return points


def write_plot(points: list[dict[str, Any]], output: Path) -> Path:
    """Draw `points` (see `zoo_points`) into `output`, replaced atomically."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise CifarTimmError('`cifar-timm plot` needs matplotlib: pip install matplotlib') from e
    if not points:
        raise CifarTimmError('nothing to plot: no published weight and no source number is recorded')
    ours = [p for p in points if p['kind'] == 'ours']
    sources = [p for p in points if p['kind'] == 'source']
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    panels = (('params', 'parameters (millions)'), ('macs', 'MACs per 32x32 image (millions)'))
    for ax, (key, label) in zip(axes, panels):
        for s in sources:  # a dotted line joins each source number to our weights of that architecture
            for o in (o for o in ours if o['model'] == s['model']):
                ax.plot([s[key] / 1e6, o[key] / 1e6], [s['top1'], o['top1']], ':', color='0.6', lw=0.8, zorder=1)
        if sources:
            ax.scatter([s[key] / 1e6 for s in sources], [s['top1'] for s in sources], s=36, facecolors='none',
                       edgecolors=SOURCE_COLOR, linewidths=1.3, zorder=2, label="source's reported top-1")
        if ours:
            low = [o['top1'] - o['ci95'][0] if o['ci95'] else 0 for o in ours]
            high = [o['ci95'][1] - o['top1'] if o['ci95'] else 0 for o in ours]
            ax.errorbar([o[key] / 1e6 for o in ours], [o['top1'] for o in ours], yerr=[low, high], fmt='o', ms=5,
                        color=OURS_COLOR, ecolor=OURS_COLOR, elinewidth=1, capsize=2, zorder=3,
                        label=f'ours: top-1 on the {N_EXACT:,} exact test images, 95% interval')
        for p in ours + [s for s in sources if not any(o['model'] == s['model'] for o in ours)]:
            ax.annotate(p['name'], (p[key] / 1e6, p['top1']), xytext=(4, 3), textcoords='offset points', fontsize=6.5,
                        color='0.25')
        ax.set_xscale('log')
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which='both')
    axes[0].set_ylabel('CIFAR-10 test top-1 (%)')
    axes[0].legend(loc='lower right', fontsize=8)
    title = 'cifar-timm zoo: top-1 against size and compute'
    if not ours:
        title += ' (no weights published yet: the sources\' numbers only)'
    fig.suptitle(title)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format='png', dpi=90, metadata={POINTS_KEY: json.dumps(points, sort_keys=True)})
    plt.close(fig)
    output = Path(output)
    write_bytes_atomic(output, image.getvalue())
    return output


def read_points(path: Path) -> list[dict[str, Any]]:
    """The points a `cifar-timm plot` PNG was drawn from."""
    from PIL import Image
    with Image.open(path) as image:
        text = getattr(image, 'text', {}).get(POINTS_KEY)
    if text is None:
        raise CifarTimmError(f'{path} was not written by `cifar-timm plot` (no {POINTS_KEY} text): redraw it with '
                             f'`cifar-timm plot --output {path}`')
    return json.loads(text)
