"""The zoo as people read it: README's model table, docs/results.md and docs/zoo.png are generated from the records
(`cifar-timm tables`, `cifar-timm plot`) and must agree with them; with published weights (a temporary
pretrained-tags file, never the packaged one) the same commands show them.

Counting every architecture's params and MACs takes ~20 s on the project CPU; it is done once per process
(`registered_size` caches it), so the file costs about that.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cifar_timm.cli import main
from cifar_timm.commands.plot import read_points, zoo_points
from cifar_timm.commands.recipe_costs import recipe_line
from cifar_timm.commands.tables import TablesError, replace_section, update_generated
from cifar_timm.hub import TAGS_FILE_ENV

REPO = Path(__file__).resolve().parents[1]
RECORDS = {
    'resnet20.c10': {'hf_hub_id': 'cifar-timm/resnet20.c10', 'params': 269_722, 'macs': 40_551_040, 'results': {
        'top1_exact': 91.6, 'top1_exact_ci95': [89.7, 93.2], 'top1_test': 91.7, 'top1_val': 91.9, 'epochs': 180,
        'train_time_s': 5400.0, 'hardware': '1x NVIDIA H100'}},
    'vgg7_bn.c10': {'hf_hub_id': 'cifar-timm/vgg7_bn.c10', 'results': {  # no params/MACs: counted from the model
        'top1_exact': 90.5, 'top1_exact_ci95': [88.5, 92.2], 'top1_test': 90.4}},
    'resnet20.shapes': {'dataset': 'shapes', 'num_classes': 3, 'results': {'top1_val': 100.0}},  # not CIFAR-10
}


@pytest.fixture
def published(tmp_path, monkeypatch):
    """Three published weights in a pretrained-tags file in force for this test only."""
    path = tmp_path / 'pretrained_tags.json'
    path.write_text(json.dumps(RECORDS))
    monkeypatch.setenv(TAGS_FILE_ENV, str(path))
    return path


@pytest.fixture
def none_published(tmp_path, monkeypatch):
    path = tmp_path / 'pretrained_tags.json'
    path.write_text('{}')
    monkeypatch.setenv(TAGS_FILE_ENV, str(path))


@pytest.fixture
def checkout_copy(tmp_path) -> Path:
    """README.md and docs/results.md of this checkout, in a folder the test may rewrite."""
    root = tmp_path / 'checkout'
    (root / 'docs').mkdir(parents=True)
    shutil.copyfile(REPO / 'README.md', root / 'README.md')
    shutil.copyfile(REPO / 'docs' / 'results.md', root / 'docs' / 'results.md')
    return root


def test_committed_tables_agree_with_the_records(capsys):
    assert update_generated(REPO) == [], 'run `cifar-timm tables --write` after `cifar-timm export`'
    assert main(['tables']) == 0
    assert 'agree with the records' in capsys.readouterr().out


def test_committed_plot_agrees_with_the_records():
    png = REPO / 'docs' / 'zoo.png'
    assert png.stat().st_size < 200_000, 'keep the committed plot small'
    drawn = read_points(png)
    assert drawn == json.loads(json.dumps(zoo_points())), 'run `cifar-timm plot --output docs/zoo.png`'
    assert ('](zoo.png)' in (REPO / 'docs' / 'results.md').read_text()
            and '](docs/zoo.png)' in (REPO / 'README.md').read_text())


def test_plot_with_no_weights_shows_the_sources(none_published, tmp_path, capsys):
    out = tmp_path / 'zoo.png'
    assert main(['plot', '--output', str(out)]) == 0
    assert '0 published weights' in capsys.readouterr().out
    points = read_points(out)
    assert {p['kind'] for p in points} == {'source'}
    by_name = {p['name']: p for p in points}
    assert by_name['resnet20']['top1'] == 91.25 and by_name['resnet20']['params'] == 269_722
    assert 'cifarnet' not in by_name  # its source reports no accuracy
    with Image.open(out) as image:
        assert image.format == 'PNG' and image.size[0] > image.size[1] > 300


def test_plot_draws_each_published_weight_with_its_interval(published, tmp_path):
    out = tmp_path / 'zoo.png'
    assert main(['plot', '-o', str(out)]) == 0
    ours = {p['name']: p for p in read_points(out) if p['kind'] == 'ours'}
    assert sorted(ours) == ['resnet20.c10', 'vgg7_bn.c10']  # the run on the user's own images is not in the zoo
    assert ours['resnet20.c10'] == dict(kind='ours', name='resnet20.c10', model='resnet20', params=269_722,
                                        macs=40_551_040, top1=91.6, ci95=[89.7, 93.2])
    assert ours['vgg7_bn.c10']['params'] == 1_110_826 and ours['vgg7_bn.c10']['ci95'] == [88.5, 92.2]


def test_tables_write_puts_published_weights_into_readme_and_docs(published, checkout_copy, capsys):
    assert main(['tables', '--root', str(checkout_copy)]) == 1
    assert 'out of date' in capsys.readouterr().out
    assert main(['tables', '--write', '--root', str(checkout_copy)]) == 0
    assert update_generated(checkout_copy) == []
    readme = (checkout_copy / 'README.md').read_text()
    row = '| `resnet20` | He et al. 2015, option A | 269,722 | 40.55M | 91.25 | `resnet20.c10` 91.60 [89.7, 93.2] |'
    assert row in readme
    assert '| `resnet32` | He et al. 2015, option A | 464,154 | 68.86M | 92.49 | not yet |' in readme
    assert 'shapes' not in readme
    results = (checkout_copy / 'docs' / 'results.md').read_text()
    assert ('| `resnet20.c10` | 269,722 | 40.55M | 91.60 [89.7, 93.2] | 91.70 | 91.25 | 91.90 | 180 | 1.50 h | '
            '1x NVIDIA H100 |') in results
    assert '| `vgg7_bn.c10` | 1,110,826 | 87.92M | 90.50 [88.5, 92.2] | 90.40 | 90.16 | – | – | – | – |' in results
    # only the generated sections changed
    original = (REPO / 'README.md').read_text()
    assert readme.split('<!-- BEGIN models')[0] == original.split('<!-- BEGIN models')[0]
    assert readme.split('<!-- END models -->')[1] == original.split('<!-- END models -->')[1]


def test_missing_or_doubled_markers_are_clear_errors(tmp_path):
    with pytest.raises(TablesError, match='needs exactly one, between a line `<!-- BEGIN models'):
        replace_section('no markers here\n', 'models', 'table', tmp_path / 'README.md')
    text = '<!-- BEGIN models x -->\nold\n<!-- END models -->\n'
    assert replace_section(text, 'models', 'new') == ('<!-- BEGIN models x -->\nnew\n<!-- END models -->\n', True)
    with pytest.raises(TablesError, match='has 2 `models` sections'):
        replace_section(text * 2, 'models', 'new')
    # a section a file may lack: added before its heading once it has something to say, never while empty
    card = 'intro\n\n## Training data\nrest\n'
    assert replace_section(card, 'other', '', insert_before='## Training data') == (card, False)
    assert replace_section(card, 'other', 'table', insert_before='## Training data') == (
        'intro\n\n<!-- BEGIN other (generated by `cifar-timm tables --write`) -->\ntable\n<!-- END other -->\n\n'
        '## Training data\nrest\n', True)


# -- what a shorter recipe costs: docs/results.md and the model cards compare an architecture's weights -----------

HE_CONFIG = {'batch_size': 128, 'optimizer': {'name': 'momentum', 'lr': 0.1, 'weight_decay': 1e-4},
             'scheduler': {'name': 'multistep', 'milestones': [90, 135], 'decay_rate': 0.1},
             'loss': {'label_smoothing': 0.0}, 'mixup': {'name': 'none'}, 'ema': {'enabled': False}}
SHORT_CONFIG = {'batch_size': 128, 'optimizer': {'name': 'sgd', 'lr': 0.1, 'weight_decay': 5e-4},
                'scheduler': {'name': 'cosine', 'warmup_epochs': 2}, 'loss': {'label_smoothing': 0.1},
                'mixup': {'name': 'timm'}, 'data': {'cutout': 8}, 'ema': {'enabled': True, 'decay': 0.999}}
CARD = '# Model card for {name}\n\n## Results\nrows\n\n## Training data\nTrained on CIFAR-10.\n'


def test_recipe_line_names_what_a_reader_compares():
    assert recipe_line(HE_CONFIG) == ('SGD momentum lr 0.1, weight decay 0.0001, batch 128; multistep (x0.1 at epochs '
                                      '90, 135)')
    assert recipe_line(SHORT_CONFIG) == ('SGD Nesterov lr 0.1, weight decay 0.0005, batch 128; cosine, 2 warm-up '
                                         'epochs; label smoothing 0.1; Mixup/CutMix; cutout 8; EMA 0.999 (exported)')
    assert recipe_line({'optimizer': {'name': 'lookahead_momentum', 'lr': 0.05}}).startswith(
        'Lookahead SGD momentum lr 0.05, weight decay 0')
    assert recipe_line({**HE_CONFIG, 'distill': {'teacher': 'se_mxresnet20.src_c10'}}).endswith(
        '; distilled from se_mxresnet20.src_c10')


@pytest.fixture
def two_recipes(tmp_path, monkeypatch, checkout_copy):
    """resnet20 with a long and a short weight, vgg7_bn with one; their cards and results.json in the checkout's hub/."""
    records = dict(RECORDS, **{'resnet20.short_c10': {'hf_hub_id': 'cifar-timm/resnet20.short_c10', 'results': {
        'top1_exact': 87.32, 'top1_exact_ci95': [85.1, 89.2], 'top1_test': 86.27, 'top1_val': 87.62, 'epochs': 30,
        'train_time_s': 3600.0, 'hardware': '1x CPU'}}})
    path = tmp_path / 'pretrained_tags.json'
    path.write_text(json.dumps(records))
    monkeypatch.setenv(TAGS_FILE_ENV, str(path))
    for name, config in [('resnet20.c10', HE_CONFIG), ('resnet20.short_c10', SHORT_CONFIG), ('vgg7_bn.c10', None)]:
        folder = checkout_copy / 'hub' / name
        folder.mkdir(parents=True)
        (folder / 'README.md').write_text(CARD.format(name=name))
        if config:
            (folder / 'results.json').write_text(json.dumps({'config': config}))
    return checkout_copy


def test_tables_compare_the_weights_of_one_architecture(two_recipes):
    stale = update_generated(two_recipes, write=True)
    assert sorted(stale) == ['README.md: models', 'docs/results.md: recipes', 'docs/results.md: results',
                             'hub/resnet20.c10/README.md: other-weights',
                             'hub/resnet20.short_c10/README.md: other-weights']
    assert update_generated(two_recipes) == []  # a second run finds nothing to do
    # the short weight against the longest-trained one, on the same images
    short_row = ('| `resnet20.short_c10` | SGD Nesterov lr 0.1, weight decay 0.0005, batch 128; cosine, 2 warm-up '
                 'epochs; label smoothing 0.1; Mixup/CutMix; cutout 8; EMA 0.999 (exported) | 30 | 1.00 h on 1x CPU | '
                 '87.32 [85.1, 89.2] | -4.28 | 86.27 | -5.43 | 87.62 | -4.28 |')
    long_row = ('| `resnet20.c10` | SGD momentum lr 0.1, weight decay 0.0001, batch 128; multistep (x0.1 at epochs 90, '
                '135) | 180 | 1.50 h on 1x NVIDIA H100 | 91.60 [89.7, 93.2] | reference | 91.70 | reference | 91.90 | '
                'reference |')
    results = (two_recipes / 'docs' / 'results.md').read_text()
    section = results.split('<!-- BEGIN recipes')[1]
    assert '**resnet20**: differences against `resnet20.c10`' in section and 'vgg7_bn' not in section
    assert section.index(long_row) < section.index(short_row)
    # each resnet20 card carries the table, marking its own row, before its training-data section
    card = (two_recipes / 'hub' / 'resnet20.short_c10' / 'README.md').read_text()
    assert card.index('## Results') < card.index('## Other weights of this architecture') < card.index(
        '## Training data')
    assert short_row.replace('`resnet20.short_c10`', '`resnet20.short_c10` (this weight)') in card
    assert long_row in card
    assert card.endswith('## Training data\nTrained on CIFAR-10.\n')
    # an architecture with one weight keeps its card as exported
    vgg = two_recipes / 'hub' / 'vgg7_bn.c10' / 'README.md'
    assert vgg.read_text() == CARD.format(name='vgg7_bn.c10')


def test_a_card_whose_comparison_is_stale_is_reported_and_rewritten(two_recipes, capsys):
    assert main(['tables', '--write', '--root', str(two_recipes)]) == 0
    card = two_recipes / 'hub' / 'resnet20.c10' / 'README.md'
    card.write_text(card.read_text().replace('-4.28', '-9.99'))
    assert main(['tables', '--root', str(two_recipes)]) == 1
    assert 'hub/resnet20.c10/README.md: other-weights' in capsys.readouterr().out
    assert main(['tables', '--write', '--root', str(two_recipes)]) == 0
    assert '-9.99' not in card.read_text() and card.read_text().count('<!-- BEGIN other-weights') == 1
