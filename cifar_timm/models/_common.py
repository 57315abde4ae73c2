"""What every cifar-timm family shares: the CIFAR pretrained cfg, the default-cfg table and the builder.

`cifar_cfg` fills in what is true of every CIFAR-10 model (32x32 input, crop_pct 1.0, official mean/std,
10 labelled classes); a family adds only its own `first_conv`, `classifier` and source. `cifar_default_cfgs`
turns a family's `{name: cfg}` table into timm default cfgs, adding one `name.tag` entry per weight published
in `pretrained_tags.json` (written by `cifar-timm export`), so weights stay data, never code.
`create_cifar_model` lets `cifar_timm.hub` locate and verify the weights, then leaves loading to timm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from timm.models import build_model_with_cfg, generate_default_cfgs, split_model_name_tag

from ..constants import (
    CIFAR10_CLASSES, CIFAR10_INPUT_SIZE, CIFAR10_MEAN, CIFAR10_NAME, CIFAR10_NUM_CLASSES, CIFAR10_STD,
)
from ..hub import check_pretrained_tag, load_pretrained_tags, resolve_pretrained_kwargs


@dataclass(frozen=True)
class SourceResult:
    """Top-1 (%) that the source project reports for an architecture, and what kind of number it is."""
    top1: float
    note: str = ''


# Filled by `cifar_default_cfgs`: architecture name -> the source's reported result (None when it reports none).
SOURCE_RESULTS: dict[str, Optional[SourceResult]] = {}


def cifar_cfg(
        first_conv: str,
        classifier: str,
        origin_url: str,
        paper_ids: Optional[str] = None,
        license: Optional[str] = None,
        **kwargs: Any,
) -> dict[str, Any]:
    """A timm pretrained cfg for a CIFAR-10 model; kwargs override the defaults."""
    return {
        'input_size': CIFAR10_INPUT_SIZE,
        'fixed_input_size': False,
        'interpolation': 'bilinear',
        'crop_pct': 1.0,
        'crop_mode': 'center',
        'mean': CIFAR10_MEAN,
        'std': CIFAR10_STD,
        'num_classes': CIFAR10_NUM_CLASSES,
        'label_names': CIFAR10_CLASSES,
        'pool_size': None,
        'first_conv': first_conv,
        'classifier': classifier,
        'origin_url': origin_url,
        'paper_ids': paper_ids,
        'license': license,
        **kwargs,
    }


def cifar_default_cfgs(
        cfgs: dict[str, dict[str, Any]],
        source_top1: Optional[dict[str, Optional[SourceResult]]] = None,
) -> dict:
    """timm default cfgs for a family: one untagged cfg per architecture plus one per published weight.

    `source_top1` records what the source project reports, for `cifar-timm list` and the model cards.
    """
    published = load_pretrained_tags()
    entries: dict[str, dict[str, Any]] = {}
    for name, cfg in cfgs.items():
        tags = {k: v for k, v in published.items() if split_model_name_tag(k)[0] == name}
        # timm's default tag is an architecture's first cfg: its best weights on the validation split
        for name_tag, overlay in sorted(tags.items(), key=_best_validation_first):
            entries[name_tag] = {**cfg, **_cfg_fields(overlay)}
        if not tags:
            entries[name] = cfg
        SOURCE_RESULTS[name] = (source_top1 or {}).get(name)
    return generate_default_cfgs(entries)


def _best_validation_first(item: tuple[str, dict[str, Any]]) -> tuple[bool, float, str]:
    top1_val = (item[1].get('results') or {}).get('top1_val')
    own_images = item[1].get('dataset', CIFAR10_NAME) != CIFAR10_NAME  # a user's own classes: never the default
    return (own_images, -top1_val if top1_val is not None else float('inf'), item[0])


def _cfg_fields(overlay: dict[str, Any]) -> dict[str, Any]:
    """The part of a published-tag record that belongs in a timm PretrainedCfg.

    The rest (sha256, size, results) has no PretrainedCfg field; `cifar_timm.hub` reads it by name at load time.
    """
    from timm.models._pretrained import PretrainedCfg
    fields = PretrainedCfg.__dataclass_fields__
    return {k: v for k, v in overlay.items() if k in fields}


def create_cifar_model(model_cls: Callable, variant: str, pretrained: bool = False,
                       default_feature_cfg: Optional[dict[str, Any]] = None, **kwargs: Any):
    """Build a cifar-timm model through timm's `build_model_with_cfg` (pretrained loading, features_only...).

    Families pass their own `default_feature_cfg` (e.g. `out_indices` = one per stage); a user's `feature_cfg`
    keys win over it. With `pretrained`, the weights file is found ($CIFAR_TIMM_WEIGHTS, hub/, the Hub) and checked
    first, then timm loads it as a `file` overlay.
    """
    kwargs['feature_cfg'] = {**(default_feature_cfg or {}), **(kwargs.get('feature_cfg') or {})}
    if isinstance(kwargs.get('pretrained_cfg'), str):  # the tag of `name.tag`, which timm hands over this way
        check_pretrained_tag(variant, kwargs['pretrained_cfg'])
    if pretrained:
        kwargs = resolve_pretrained_kwargs(variant, kwargs)
    return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
