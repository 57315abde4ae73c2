"""`cifar-timm export RUN_DIR`: turn a finished training run into a Hub repo folder and a published-weight record.

Reads what `recipes/train.py` leaves in RUN_DIR (export/{config.json, model.safetensors, results.json},
config.yaml, metrics.csv, curves.png) and writes `hub/<model>.<tag>/` (config.json, model.safetensors, results.json,
README.md model card, curves.png) plus the `<model>.<tag>` record in pretrained_tags.json (hf_hub_id, sha256,
size, licence, params, MACs, measured results), which makes `timm.create_model('<model>.<tag>', pretrained=True)`
work on the next import. The repo folder and the record are each replaced atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from ..constants import CIFAR10_NAME
from ..errors import CifarTimmError
from ..hub import (DEFAULT_ORG, WEIGHTS_FILENAME, architecture_check, check_safetensors_readable, default_hub_dir,
                   replace_dir_atomic, sha256_file, write_pretrained_tag)
from ..model_card import CardFacts, render_card

HELP = 'Turn a training run folder into a Hub repo hub/<model>.<tag>/ with a model card, and record its weights.'

DEFAULT_TAG = 'c10'
DEFAULT_LICENSE = 'apache-2.0'  # the project's licence, under which weights trained here are published
# Numbers copied from results.json into the record (`cifar-timm list --pretrained` shows them).
RECORD_RESULT_KEYS = ('top1_exact', 'top1_exact_ci95', 'n_exact', 'top1_test', 'top1_test_ci95', 'n_test', 'top1_val',
                      'top1_val_exact', 'top1_val_jpeg', 'top1_val_exact_as_jpeg', 'epochs', 'train_time_s', 'hardware')
_TAG_PATTERN = re.compile(r'^[a-z0-9][a-z0-9_]*$')


class ExportError(CifarTimmError):
    """A run folder that cannot be exported as it is."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('run_dir', type=Path, help='output folder of a finished `recipes/train.py` run')
    parser.add_argument('--tag', default=DEFAULT_TAG,
                        help=f'pretrained tag, the part after the dot (default {DEFAULT_TAG})')
    parser.add_argument('--hub-dir', type=Path, default=None,
                        help='folder of Hub repos (default: hub/ of this checkout, or $CIFAR_TIMM_HUB_DIR)')
    parser.add_argument('--org', default=DEFAULT_ORG, help=f'Hub organisation of the repo id (default {DEFAULT_ORG})')
    parser.add_argument('--license', default=DEFAULT_LICENSE,
                        help=f'licence of the weights (default {DEFAULT_LICENSE})')
    parser.add_argument('--tags-file', type=Path, default=None,
                        help='pretrained-tags file to update (default: the package\'s, or $CIFAR_TIMM_PRETRAINED_TAGS)')
    parser.add_argument('--force', action='store_true', help='replace an existing repo folder holding other weights')


def run(args: argparse.Namespace) -> int:
    repo = export_run(args.run_dir, tag=args.tag, hub_dir=args.hub_dir, org=args.org, license=args.license,
                      tags_file=args.tags_file, force=args.force)
    print(f'exported {repo.name} to {repo} (publish with `cifar-timm publish {repo} --org {args.org}`)')
    return 0


def export_run(
        run_dir: Path,
        tag: str = DEFAULT_TAG,
        hub_dir: Optional[Path] = None,
        org: str = DEFAULT_ORG,
        license: str = DEFAULT_LICENSE,
        tags_file: Optional[Path] = None,
        force: bool = False,
) -> Path:
    """Write `<hub_dir>/<model>.<tag>/` from a run folder and record it; returns the repo folder."""
    from ..models import SOURCE_RESULTS
    from .list_models import model_size

    if not _TAG_PATTERN.match(tag):
        raise ExportError(f'tag {tag!r} is not valid: use lower-case letters, digits and _ (e.g. c10, c10_long).')
    run_dir = Path(run_dir)
    hf_config, results = _read_run(run_dir)
    dataset = results.get('dataset') or CIFAR10_NAME
    if dataset != CIFAR10_NAME and tag == DEFAULT_TAG:
        raise ExportError(f'{run_dir} was trained on {dataset}, not CIFAR-10: give its weights their own tag, e.g. '
                          f'--tag {re.sub("[^a-z0-9_]", "_", dataset.lower()).strip("_") or "own"}')
    architecture, model_args = hf_config['architecture'], hf_config.get('model_args', {})
    name_tag, weights = f'{architecture}.{tag}', run_dir / 'export' / WEIGHTS_FILENAME
    _check_weights(name_tag, weights, architecture, model_args)

    sha256 = sha256_file(weights)
    repo = (Path(hub_dir) if hub_dir else default_hub_dir()) / name_tag
    if (repo / WEIGHTS_FILENAME).is_file() and not force and sha256_file(repo / WEIGHTS_FILENAME) != sha256:
        raise ExportError(f'{repo} already holds other {name_tag} weights. Choose another --tag, or pass --force to '
                          f'replace them (the published Hub copy stays until you run `cifar-timm publish`).')

    params, macs = model_size(architecture, **model_args)
    pretrained_cfg = dict(hf_config.get('pretrained_cfg', {}), tag=tag, license=license)
    source = SOURCE_RESULTS.get(architecture)
    curves = run_dir / 'curves.png'
    facts = CardFacts(
        name_tag=name_tag, hf_hub_id=f'{org}/{name_tag}', license=license, sha256=sha256, params=params, macs=macs,
        results=results, config_yaml=_config_yaml(run_dir, results), pretrained_cfg=pretrained_cfg,
        source_top1=source.top1 if source else None, source_note=source.note if source else '',
        curves_file=curves.name if curves.is_file() else None, best_val_top1=_best_val_top1(run_dir))

    tmp = repo.with_name(f'.{repo.name}.tmp{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / 'config.json').write_text(json.dumps(dict(hf_config, pretrained_cfg=pretrained_cfg), indent=2) + '\n')
    shutil.copyfile(weights, tmp / WEIGHTS_FILENAME)
    (tmp / 'results.json').write_text(json.dumps(dict(results, params=params, macs=macs), indent=2) + '\n')
    (tmp / 'README.md').write_text(render_card(facts))
    if facts.curves_file:
        shutil.copyfile(curves, tmp / facts.curves_file)
    replace_dir_atomic(tmp, repo)

    write_pretrained_tag(name_tag, _record(facts, weights.stat().st_size), tags_file)
    return repo


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's export/config.json and export/results.json, after checking it is a finished run of our model."""
    import timm

    export_dir = run_dir / 'export'
    needed = [export_dir / n for n in ('config.json', WEIGHTS_FILENAME, 'results.json')]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ExportError(f'{run_dir} is not a finished training run: missing {", ".join(missing)}. Pass the `output` '
                          f'folder of a `recipes/train.py` run; it writes export/ when training ends.')
    hf_config = json.loads((export_dir / 'config.json').read_text())
    architecture = hf_config.get('architecture')
    if not architecture or not timm.is_model(architecture):
        raise ExportError(f'{export_dir / "config.json"} names architecture {architecture!r}, which cifar-timm does '
                          f'not register; export runs of the models listed by `cifar-timm list`.')
    return hf_config, json.loads((export_dir / 'results.json').read_text())


def _check_weights(name_tag: str, weights: Path, architecture: str, model_args: dict[str, Any]) -> None:
    """The weights must build the model they claim to be: load them strictly before publishing anything."""
    import timm
    from safetensors.torch import load_file

    fix = (f'The run\'s export is damaged: restore {weights} from a copy (e.g. the pack it came in), or re-create it '
           f'from the run\'s last checkpoint with `recipes/train.py ... output={weights.parent.parent} resume=auto`.')
    check_safetensors_readable(weights, name_tag, fix)
    model = timm.create_model(architecture, **model_args)
    check = architecture_check(name_tag, weights, model.num_classes, classifier=None, first_conv=None)
    model.load_state_dict(check(load_file(weights), model))


def _record(facts: CardFacts, size: int) -> dict[str, Any]:
    """The pretrained_tags.json entry: PretrainedCfg fields (hf_hub_id, license) plus what timm has no field for."""
    record = {
        'hf_hub_id': facts.hf_hub_id,
        'license': facts.license,
        'sha256': facts.sha256,
        'size': size,
        'params': facts.params,
        'macs': facts.macs,
        'results': {k: facts.results[k] for k in RECORD_RESULT_KEYS if facts.results.get(k) is not None},
    }
    if facts.own_images:  # PretrainedCfg fields: the tag then builds with the run's classes; the zoo tables skip it
        record.update(dataset=facts.dataset, num_classes=len(facts.classes), label_names=list(facts.classes))
    return record


def _config_yaml(run_dir: Path, results: dict[str, Any]) -> str:
    path = run_dir / 'config.yaml'
    if path.is_file():
        return path.read_text()
    import yaml
    return yaml.safe_dump(results.get('config', {}), sort_keys=False)


def _best_val_top1(run_dir: Path) -> Optional[float]:
    from ..training.run_log import as_float, read_metrics
    values = [v for row in read_metrics(run_dir / 'metrics.csv') if (v := as_float(row.get('val_top1'))) is not None]
    return max(values) if values else None
