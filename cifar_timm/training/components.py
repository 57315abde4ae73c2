"""The timm pieces a recipe is made of, built from the config: optimizer, LR schedule, loss, mixup, EMA.

Each builder is a thin call into timm (create_optimizer_v2, create_scheduler_v2, Mixup, the CE losses,
ModelEmaV3); the only logic here is how our config keys map onto their arguments.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import Lookahead, create_optimizer_v2
from timm.optim._param_groups import param_groups_weight_decay
from timm.scheduler import create_scheduler_v2

from .config import ConfigError
from .mixup import LabelPreservingMixup


def build_optimizer(model: torch.nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """timm optimizer; `lookahead_<name>` wraps it in timm's Lookahead with the config's k and alpha.

    Weight decay goes through timm's own parameter grouping (`param_groups_weight_decay`): `filter_bias_and_bn`
    keeps 1-d tensors (biases, norm affines) out, the model's `no_weight_decay()` and `no_weight_decay` patterns
    (fnmatch on parameter names) keep more out. The seed-1 Keras l2(1e-4) on conv/linear kernels only is thus
    weight_decay 2e-4 (Keras adds lambda*sum(w^2), gradient 2*lambda*w), filter_bias_and_bn true, SE layers listed.
    timm names: `momentum` is SGD with classical momentum, `sgd`/`nesterov` are SGD with Nesterov momentum.
    `body_lr_scale` != 1 gives every parameter but the classifier's that fraction of the LR (fine-tuning).
    """
    name = cfg['name'].lower()
    lookahead = name.startswith('lookahead_')
    base_name = name[len('lookahead_'):] if lookahead else name
    no_weight_decay = set(getattr(model, 'no_weight_decay', lambda: set())()) | set(cfg['no_weight_decay'])
    groups = param_groups_weight_decay(
        model,
        weight_decay=cfg['weight_decay'],
        weight_decay_exclude_1d=cfg['filter_bias_and_bn'],
        no_weight_decay_list=no_weight_decay,
    )
    if cfg['body_lr_scale'] != 1:
        groups = _scale_body_lr(model, groups, cfg['lr'], cfg['body_lr_scale'])
    try:
        optimizer = create_optimizer_v2(
            model,
            opt=base_name,
            lr=cfg['lr'],
            weight_decay=cfg['weight_decay'],
            momentum=cfg['momentum'],
            param_group_fn=lambda _: groups,
            **cfg['kwargs'],
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f'cannot build optimizer {cfg["name"]!r} ({e}); use a timm optimizer name such as '
                          f'momentum, sgd, adamw or lookahead_momentum, and only its keyword arguments') from e
    if lookahead:
        optimizer = Lookahead(optimizer, alpha=cfg['lookahead_alpha'], k=cfg['lookahead_k'])
    return optimizer


def _scale_body_lr(model: torch.nn.Module, groups: list[dict[str, Any]], lr: float,
                   scale: float) -> list[dict[str, Any]]:
    """Each group split in two: the classifier's parameters first (the recipe's LR, the one the logs show), then the
    rest at LR x scale, written the way timm's layer-decay groups are: `lr_scale`, which timm's schedulers apply to
    every value they set from `initial_lr`. `lr` itself is scaled too, for runs without a schedule."""
    head = {id(p) for p in model.get_classifier().parameters()}
    split = []
    for group in groups:
        for in_head in (True, False):
            params = [p for p in group['params'] if (id(p) in head) == in_head]
            if params:
                split.append(dict(group, params=params) if in_head else
                             dict(group, params=params, lr=lr * scale, initial_lr=lr, lr_scale=scale))
    return split


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], epochs: int, updates_per_epoch: int):
    """timm scheduler (or None for `none`). `warmup_prefix` puts the warm-up before a schedule of
    epochs - warmup_epochs, so the run is still `epochs` long; `per_iteration` updates every optimizer step
    (for multistep, timm then decays one update before the epoch boundary; no recipe here does that)."""
    if cfg['name'] in (None, 'none'):
        return None
    warmup_epochs = cfg['warmup_epochs']
    if warmup_epochs >= epochs:  # a shortened smoke run: keep a schedule to run rather than refuse it
        warmup_epochs = max(epochs - 1, 0)
        warnings.warn(f'scheduler.warmup_epochs={cfg["warmup_epochs"]} does not fit in {epochs} epochs; '
                      f'warming up for {warmup_epochs}')
    num_epochs = epochs - warmup_epochs if cfg['warmup_prefix'] else epochs
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=cfg['name'],
            num_epochs=num_epochs,
            # None = timm's default; older timm multiplies it by updates_per_epoch, so leave it out then
            **({} if cfg['decay_epochs'] is None else {'decay_epochs': cfg['decay_epochs']}),
            # Our milestones mean what torch's MultiStepLR (and the sources) mean: the first epoch at the decayed LR.
            # timm applies milestone m at t == m - 1 (its documented historical convention), hence the + 1.
            decay_milestones=[m + 1 for m in cfg['milestones']],
            decay_rate=cfg['decay_rate'],
            min_lr=cfg['min_lr'],
            warmup_lr=cfg['warmup_lr'],
            warmup_epochs=warmup_epochs,
            warmup_prefix=cfg['warmup_prefix'],
            step_on_epochs=not cfg['per_iteration'],
            updates_per_epoch=updates_per_epoch,
        )
    except (ValueError, AssertionError) as e:
        raise ConfigError(f'cannot build scheduler {cfg["name"]!r} ({e}); check the scheduler section') from e
    if scheduler is None:
        raise ConfigError(f'unknown scheduler {cfg["name"]!r}; use cosine, multistep, step, constant or none')
    return scheduler


def build_mixup(cfg: dict[str, Any], label_smoothing: float, num_classes: int):
    """None, timm's Mixup (label smoothing folded into its soft targets), or the label-preserving mixup."""
    if cfg['name'] == 'timm':
        return Mixup(
            mixup_alpha=cfg['mixup_alpha'],
            cutmix_alpha=cfg['cutmix_alpha'],
            prob=cfg['prob'],
            switch_prob=cfg['switch_prob'],
            mode=cfg['mode'],
            label_smoothing=label_smoothing,  # timm defaults to 0.1; ours comes from loss.label_smoothing
            num_classes=num_classes,
        )
    if cfg['name'] == 'label_preserving':
        return LabelPreservingMixup(alpha=cfg['alpha'])
    return None


def build_loss(label_smoothing: float, soft_targets: bool) -> torch.nn.Module:
    """SoftTargetCrossEntropy for timm Mixup's soft targets, else (label-smoothed) cross-entropy."""
    if soft_targets:
        return SoftTargetCrossEntropy()
    if label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=label_smoothing)
    return torch.nn.CrossEntropyLoss()


def build_ema(model: torch.nn.Module, cfg: dict[str, Any]) -> Optional[torch.nn.Module]:
    if not cfg['enabled']:
        return None
    from timm.utils import ModelEmaV3
    return ModelEmaV3(model, decay=cfg['decay'], use_warmup=cfg['warmup'])
