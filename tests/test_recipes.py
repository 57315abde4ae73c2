"""Every recipe in recipes/configs/ composes and trains: one optimizer step on 8 images, on CPU.

Each config runs as written except for what makes it small (images, batch, epochs, evaluation sizes), so its
optimizer, schedule, loss, mixup, padding and clipping are all exercised. Files starting with `_` are bases.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.training import load_config, train

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / 'recipes' / 'configs').glob('*.yaml')
                 if not p.name.startswith('_'))

# The weights issues 5 and 6 publish; each must have a recipe.
PUBLISHED = {
    'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'xresnet20', 'se_mxresnet20', 'se_mxresnet32',
    'se_mxresnet44', 'se_mxresnet56', 'xresnet29', 'xresnext29_16x2d', 'se_mxresnext29_16x2d', 'vgg7_bn',
    'hybrid_resnet26', 'hybrid_resnet41', 'resnext20_64x4d', 'resnext26_64x4d', 'densenet86_bc_k12',
    'densenet103_bc_k16', 'cifarnet', 'resnet50_4s', 'efficient_resnet24', 'resnet18_cifar',
}

# The CPU campaign's short recipes (issue 13, recipes/queues/cpu.yaml): <model>_short.yaml (30 epochs) and
# <model>_short60.yaml (60).
SHORT = {'resnet20', 'cifarnet', 'xresnet20', 'vgg7_bn'}
SHORT60 = {'xresnet20', 'hybrid_resnet26', 'resnet32', 'se_mxresnet20', 'se_mxresnext29_16x2d', 'vgg7_bn'}
# ... and those with a teacher (distill.teacher): <model>_short_kd.yaml and <model>_short60_kd.yaml, and
# <model>_short60_kd2.yaml, whose teachers include that model's own distilled weight
SHORT_KD = {'resnet20'}
SHORT60_KD = {'resnet20', 'resnet32', 'hybrid_resnet26', 'se_mxresnext29_16x2d'}
SHORT60_KD2 = {'se_mxresnext29_16x2d'}
RECIPE_SUFFIXES = ('_short60_kd2', '_short60_kd', '_short_kd', '_short60', '_short')


def test_every_published_weight_has_a_recipe():
    assert {p.stem for p in CONFIGS} == (PUBLISHED | {f'{m}_short' for m in SHORT} | {f'{m}_short60' for m in SHORT60}
                                         | {f'{m}_short_kd' for m in SHORT_KD} | {f'{m}_short60_kd' for m in SHORT60_KD}
                                         | {f'{m}_short60_kd2' for m in SHORT60_KD2})


def test_cpu_queue_names_existing_recipes_and_their_models():
    import yaml
    queue = yaml.safe_load((CONFIGS[0].parents[1] / 'queues' / 'cpu.yaml').read_text())
    for entry in queue['runs']:
        model, tag = entry['run'].split('.')
        assert load_config(CONFIGS[0].parent / f'{entry["recipe"]}.yaml', [])['model'] == model, entry
        assert tag.endswith('_c10')


@pytest.mark.filterwarnings('ignore:scheduler.warmup_epochs')  # one epoch cannot hold the warm-up
@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_trains_a_few_steps(path, cifar_root, tmp_path):
    config = load_config(path, [
        f'data.dir={cifar_root}', 'data.verify_md5=false', 'data.limit=8', 'data.val_limit=0', 'data.test_limit=8',
        'batch_size=8', 'epochs=1', f'output={tmp_path}', 'log.progress=false', 'log.tensorboard=false'])
    model = next((path.stem.removesuffix(s) for s in RECIPE_SUFFIXES if path.stem.endswith(s)), path.stem)
    assert config['model'] == model
    results = train(config)
    assert results['model'] == model and results['n_test'] == 8
    assert json.loads((tmp_path / 'export' / 'config.json').read_text())['architecture'] == model
