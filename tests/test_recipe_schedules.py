"""Each recipe's optimizer and learning-rate schedule, checked against the source recipes: spec
(../shared/specs/architectures.md) §2.4 for seed 1, §3.5 for seed 2, §4.1/§4.3 for He et al., §6.2 for the Efficient
ResNet; issue 6's text for resnet18_cifar; recipes/README.md for our own recipe (cifarnet, resnet50_4s).

The schedules are read from real training runs of the real loop, with each epoch shrunk to one optimizer step
(8 images, batch 8). metrics.csv's `lr` column then holds, for per-epoch schedules, the LR of each epoch, and
for per-iteration schedules, the LR after each step (step u of the real run is epoch u here). The model is swapped
for cifarnet, the fastest, since a schedule does not depend on it. Parameter grouping (what gets weight decay) is
checked on each recipe's own model.
"""
from __future__ import annotations

import csv
import fnmatch
import math
from pathlib import Path

import pytest
import timm
import torch

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.training import load_config, train
from cifar_timm.training.components import build_optimizer

CONFIGS = Path(__file__).resolve().parents[1] / 'recipes' / 'configs'


def step_lr(epoch: int, base: float, milestones: tuple[int, ...], warmup_lr: float = None) -> float:
    """x0.1 at each milestone (the first epoch at the lower LR, as torch's MultiStepLR); an optional warm-up epoch 0."""
    if warmup_lr is not None and epoch == 0:
        return warmup_lr
    return base * 0.1 ** sum(epoch >= m for m in milestones)


def cosine_lr(t: float, base: float, length: float) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * t / length))


def warmup_cosine_lr(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up from 0 over `warmup` steps, then a half-cosine to 0 over the remaining steps (spec §2.4)."""
    if step < warmup:
        return base * step / warmup
    return cosine_lr(step - warmup, base, total - warmup)


# recipe -> (epochs, LR expected in metrics.csv's row for epoch e)
EXPECTED = {
    'resnet20': (180, lambda e: step_lr(e, 0.1, (90, 135))),  # He et al. / akamaster, spec §4.3
    'resnet110': (180, lambda e: step_lr(e, 0.1, (90, 135), warmup_lr=0.01)),  # + one epoch at 0.01 (He §4.2)
    'xresnet20': (180, lambda e: step_lr(e, 0.1, (90, 135), warmup_lr=0.01)),  # spec §2.4 step schedule
    'se_mxresnet20': (180, lambda e: warmup_cosine_lr(e + 1, 0.1, 5, 180)),  # §2.4 "+ cosine decay", per step
    'vgg7_bn': (100, lambda e: step_lr(e, 3e-3, (50, 75))),  # §3.5 AdamW, MultiStepLR [50, 75]
    'cifarnet': (200, lambda e: warmup_cosine_lr(e + 1, 0.1, 5, 200)),  # ours: 5 warm-up epochs, cosine, per step
    'resnet20_short': (30, lambda e: warmup_cosine_lr(e + 1, 0.1, 2, 30)),  # the CPU campaign's short recipe
    'xresnet20_short60': (60, lambda e: warmup_cosine_lr(e + 1, 0.1, 3, 60)),  # ... at 60 epochs
    'efficient_resnet24': (200, lambda e: cosine_lr(e, 0.1, 200)),  # §6.2 CosineAnnealingLR(T_max=200), per epoch
    'resnet18_cifar': (200, lambda e: cosine_lr(e, 0.1, 200)),  # issue 6: cosine over 200 epochs
}


def _logged_lrs(path: Path, data_dir: Path, output: Path) -> list[float]:
    config = load_config(path, [
        'model=cifarnet', f'data.dir={data_dir}', 'data.verify_md5=false', 'data.limit=8',
        'data.val_limit=0', 'data.test_limit=8', 'batch_size=8', f'output={output}', 'log.progress=false',
        'log.tensorboard=false', 'checkpoint.every=1000', 'mixup.name=none'])
    train(config)
    with open(output / 'metrics.csv', newline='') as f:
        return [float(row['lr']) for row in csv.DictReader(f)]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_learning_rate_schedule_matches_the_source(name, cifar_root, tmp_path):
    epochs, expected = EXPECTED[name]
    lrs = _logged_lrs(CONFIGS / f'{name}.yaml', cifar_root, tmp_path)
    assert len(lrs) == epochs
    for epoch, lr in enumerate(lrs):
        assert lr == pytest.approx(expected(epoch), rel=1e-6, abs=1e-12), f'{name}: epoch {epoch}'


def _decayed(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, float]:
    """Parameter name -> the weight decay its group applies."""
    by_id = {id(p): group['weight_decay'] for group in optimizer.param_groups for p in group['params']}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


# recipe -> (optimizer class, Nesterov, weight decay, which parameters decay: 'all' or 'kernels' (ndim > 1))
OPTIMIZERS = {
    'resnet20': ('SGD', False, 1e-4, 'all'),  # He: SGD momentum 0.9, wd 1e-4
    'resnet110': ('SGD', False, 1e-4, 'all'),
    'xresnet20': ('SGD', False, 2e-4, 'kernels'),  # Keras l2(1e-4) on kernels == wd 2e-4 (§2.4, config comments)
    'se_mxresnet20': ('SGD', False, 2e-4, 'kernels'),  # ... and not on the SE layers
    'vgg7_bn': ('AdamW', None, 0.1, 'all'),  # §3.5: AdamW wd 0.1 on all params
    'densenet86_bc_k12': ('AdamW', None, 0.1, 'all'),
    'cifarnet': ('SGD', True, 5e-4, 'kernels'),  # ours
    'resnet20_short': ('SGD', True, 5e-4, 'kernels'),  # the CPU campaign's short recipe
    'se_mxresnet20_short60': ('SGD', True, 5e-4, 'kernels'),  # ... at 60 epochs, SE layers undecayed as the source
    'efficient_resnet24': ('Lookahead', False, 5e-4, 'all'),  # §6.2: Lookahead(SGD momentum, k 5, alpha 0.5)
    'resnet18_cifar': ('SGD', True, 5e-4, 'all'),  # issue 6: SGD-Nesterov, wd 5e-4
}


@pytest.mark.parametrize('name', sorted(OPTIMIZERS))
def test_optimizer_and_weight_decay_match_the_source(name):
    kind, nesterov, weight_decay, decays = OPTIMIZERS[name]
    config = load_config(CONFIGS / f'{name}.yaml', [])
    model = timm.create_model(config['model'])
    optimizer = build_optimizer(model, config['optimizer'])
    assert type(optimizer).__name__ == kind
    assert optimizer.defaults['lr'] == config['optimizer']['lr']
    if kind == 'Lookahead':
        assert (optimizer.defaults['lookahead_k'], optimizer.defaults['lookahead_alpha']) == (5, 0.5)
    if nesterov is not None:
        assert all(group['nesterov'] == nesterov and group['momentum'] == 0.9 for group in optimizer.param_groups)
    for param_name, decay in _decayed(optimizer, model).items():
        ndim = model.get_parameter(param_name).ndim
        wanted = decays == 'all' or (ndim > 1 and not fnmatch.fnmatch(param_name, '*.se.*'))
        assert decay == (weight_decay if wanted else 0.0), param_name
