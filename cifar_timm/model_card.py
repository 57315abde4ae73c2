"""The README.md model card of a Hub repo made by `cifar-timm export`: YAML front matter plus a Markdown body.

Every number in a card comes from the run (`results.json`, `config.yaml`, `metrics.csv`), from the model itself
(params, MACs as `cifar-timm list` counts them) or from `SOURCE_RESULTS`; the facts about the training data come from
../shared/cifar10/README.md (which images of the shared CIFAR-10 copy are exact and which were JPEG-decoded), or, for
a run on the user's own ImageFolder tree, from its results (dataset name, classes, split sizes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import yaml
from timm.models import split_model_name_tag

from .constants import (
    CIFAR10_CLASSES, CIFAR10_INPUT_SIZE, CIFAR10_MEAN, CIFAR10_NAME, CIFAR10_NUM_TEST, CIFAR10_NUM_TRAIN,
    CIFAR10_STD, EXACT_TEST_SLICE, EXACT_TRAIN_IMAGES,
)

# The shared CIFAR-10 copy (../shared/cifar10/README.md): exact pixels for EXACT_TRAIN_IMAGES of the training images
# (the official files' prefixes) and test images 0-1016; every other image decoded from a JPEG copy (q~75, 4:2:0).
N_EXACT_TEST = EXACT_TEST_SLICE.stop - EXACT_TEST_SLICE.start


@dataclass
class CardFacts:
    """What a card states, gathered by `cifar-timm export`."""
    name_tag: str                       # e.g. resnet20.c10
    hf_hub_id: str
    license: str
    sha256: str
    params: int
    macs: int
    results: dict[str, Any]             # the run's results.json
    config_yaml: str                    # the run's config.yaml, verbatim
    pretrained_cfg: dict[str, Any]      # the model's cfg (mean/std, origin_url, paper_ids)
    source_top1: Optional[float] = None
    source_note: str = ''
    curves_file: Optional[str] = None   # file name of the curve plot inside the repo
    best_val_top1: Optional[float] = None

    @property
    def dataset(self) -> str:
        """What the weights were trained on: CIFAR-10, or the name of the user's ImageFolder tree."""
        return self.results.get('dataset') or CIFAR10_NAME

    @property
    def own_images(self) -> bool:
        return self.dataset != CIFAR10_NAME

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.results.get('label_names') or CIFAR10_CLASSES)


def render_card(facts: CardFacts) -> str:
    return f'---\n{yaml.safe_dump(_front_matter(facts), sort_keys=False)}---\n\n{_body(facts)}'


def _front_matter(f: CardFacts) -> dict[str, Any]:
    r = f.results
    if f.own_images:
        metrics = [_metric(f'Top-1 on the {r.get("n_test", 0):,} test images of {f.dataset}', r.get('top1_test')),
                   _metric(f'Top-1 on the {r.get("n_val", 0):,} validation images of {f.dataset}', r.get('top1_val'))]
        dataset = {'type': f.dataset, 'name': f.dataset, 'split': 'test' if r.get('top1_test') is not None else 'val'}
    else:
        metrics = [_metric(f'Top-1 on the {N_EXACT_TEST:,} exact test images (0-{N_EXACT_TEST - 1})',
                           r.get('top1_exact'))]
        if r.get('top1_test') is not None:
            metrics.append(_metric(f'Top-1 on {_test_set(r)}', r['top1_test']))
        dataset = {'type': 'cifar10', 'name': 'CIFAR-10', 'split': 'test'}
    dataset_id = f.dataset if f.own_images else 'cifar10'
    return {
        'library_name': 'timm',
        'license': f.license,
        'datasets': [dataset_id],
        'pipeline_tag': 'image-classification',
        'tags': ['image-classification', 'timm', 'cifar-timm', dataset_id],
        'model-index': [{
            'name': f.name_tag,
            'results': [{
                'task': {'type': 'image-classification', 'name': 'Image Classification'},
                'dataset': dataset,
                'metrics': [m for m in metrics if m['value'] is not None],
            }],
        }],
    }


def _metric(name: str, value: Optional[float]) -> dict[str, Any]:
    return {'type': 'accuracy', 'name': name, 'value': None if value is None else round(float(value), 2)}


def _test_set(results: dict[str, Any]) -> str:
    n = results.get('n_test', CIFAR10_NUM_TEST)
    return f'all {n:,} test images (most JPEG-decoded)' if n >= CIFAR10_NUM_TEST else f'the first {n:,} test images'


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return 'not recorded'
    return f'{seconds:,.0f} s' if seconds < 3600 else f'{seconds / 3600:.2f} h ({seconds:,.0f} s)'


def _split_sentence(results: dict[str, Any]) -> str:
    """How many training images the run used and how many it held out, from its resolved config."""
    data = (results.get('config') or {}).get('data') or {}
    if 'val_size' not in data:
        return ''
    val_size = int(data['val_size'] or 0)
    n_train = CIFAR10_NUM_TRAIN - val_size
    if data.get('limit'):
        n_train = min(n_train, int(data['limit']))
    held_out = f', with {val_size:,} others held out for validation' if val_size else ''
    return f' This run trained on {n_train:,} of the {CIFAR10_NUM_TRAIN:,} training images{held_out}.'


def _pct(value: Optional[float]) -> str:
    return '–' if value is None else f'{value:.2f}%'


def _body(f: CardFacts) -> str:
    r, cfg = f.results, f.pretrained_cfg
    arch, _ = split_model_name_tag(f.name_tag)
    mean, std = tuple(cfg.get('mean', ())), tuple(cfg.get('std', ()))
    stats = ('the official CIFAR-10 statistics' if (mean, std) == (CIFAR10_MEAN, CIFAR10_STD) else
             "the run's own statistics")
    papers = cfg.get('paper_ids') or ''
    source_line = f' Architecture as in {cfg["origin_url"]}' if cfg.get('origin_url') else ''
    if source_line:
        source_line += f' ({papers}).' if papers else '.'
    start = ('starting from the cifar-timm CIFAR-10 weights (`pretrained=true`, a new classifier)'
             if (r.get('config') or {}).get('pretrained') else 'from scratch')
    curves = (f'\n![Training curves: loss and top-1 per epoch]({f.curves_file})\n' if f.curves_file else '')
    return f'''# Model card for {f.name_tag}

A `{arch}` image classifier for {f.dataset}, trained {start} with the cifar-timm recipes and loadable with
`timm`.{source_line}

## Model details
- **Model type:** image classification, {len(f.classes)} classes ({', '.join(f.classes)})
- **Params (M):** {f.params / 1e6:.3f} ({f.params:,})
- **MACs (M):** {f.macs / 1e6:.2f} per {'×'.join(str(s) for s in CIFAR10_INPUT_SIZE)} image (conv and linear layers)
- **Input:** {'×'.join(str(s) for s in cfg.get('input_size', CIFAR10_INPUT_SIZE))} RGB in [0, 1], normalised with
  mean {mean} and std {std} ({stats})
- **Weights:** `model.safetensors`, sha256 `{f.sha256}`
- **License:** {f.license}

## Usage
`cifar-timm` must be imported before `timm.create_model`: it registers the architectures with timm.

```python
import timm
import torch
import cifar_timm  # registers the cifar-timm architectures with timm

model = timm.create_model('{f.name_tag}', pretrained=True).eval()  # or 'hf-hub:{f.hf_hub_id}'

# the model expects normalised 32x32 RGB: let timm build the matching transform from its pretrained_cfg
data_config = timm.data.resolve_model_data_config(model)
transform = timm.data.create_transform(**data_config, is_training=False)

image = ...  # a 32x32 PIL RGB image
with torch.no_grad():
    probs = model(transform(image).unsqueeze(0)).softmax(dim=-1)
print(model.pretrained_cfg['label_names'][probs.argmax().item()])
```

Offline, point `CIFAR_TIMM_WEIGHTS` at a folder holding `{f.name_tag}/model.safetensors`; the file's sha256 is
checked before use.

{_results_section(f)}
{_training_data_section(f)}

## Training
- **Epochs:** {r.get('epochs', '–')}
{_teacher_line(r)}- **Training time:** {_duration(r.get('train_time_s'))}
{_machine_lines(r)}- **Code:** cifar-timm at git `{r.get('git_sha') or 'unknown'}`
{curves}
The full recipe (`config.yaml` of the run; train with `python recipes/train.py --config FILE`):

```yaml
{f.config_yaml.rstrip()}
```
'''


def _teacher_line(r: dict[str, Any]) -> str:
    """The weight a distilled run learned from, and how (nothing for a run without a teacher)."""
    teacher = r.get('distill_teacher')
    if not teacher:
        return ''
    d = (r.get('config') or {}).get('distill') or {}
    if isinstance(teacher, list):  # an ensemble
        source, whose = 'the mean logits of ' + ' and '.join(f'`{t}`' for t in teacher), "teachers'"
    else:
        source, whose = f'`{teacher}`', "teacher's"
    return (f"- **Distilled from:** {source} (timm's logit distillation: temperature {d.get('temperature')}, "
            f"{d.get('task_weight')} x the label loss + the rest x the {whose} KL)\n")


def _results_section(f: CardFacts) -> str:
    r = f.results
    val_row = (f'| validation split (held-out training images), final epoch; best epoch {_pct(f.best_val_top1)} | '
               f'{_pct(r.get("top1_val"))} | | {_count(r.get("n_val"))} |\n' if r.get('top1_val') is not None else ''
               ) + _jpeg_gap_rows(r)
    if f.own_images:
        test_row = (f'| the test images of {f.dataset} (data.test_dir) | {_pct(r.get("top1_test"))} | '
                    f'{_interval(r.get("top1_test_ci95"))} | {r.get("n_test", 0):,} |\n'
                    if r.get('top1_test') is not None else '| no test split (the run set no data.test_dir) | | | |\n')
        return f'''## Results
| images | top-1 | 95% interval | n |
| --- | --- | --- | --- |
{test_row}{val_row}
The interval is the Wilson score interval.{_scoring_precision(r)}
'''
    n_exact, exact_ci = r.get('n_exact', N_EXACT_TEST), _interval(r.get('top1_exact_ci95'))
    source_row = (f'| reported by the source ({f.source_note}), original CIFAR-10 | {f.source_top1:.2f}% | | |\n'
                  if f.source_top1 is not None else '')
    source_caveat = (" The source's number was measured on the original CIFAR-10, with the\nsource's own recipe; it is "
                     "shown for reference, not reproduced here." if f.source_top1 is not None
                     else ' The source reports no CIFAR-10 top-1 for this architecture.')
    return f'''## Results
| test images | top-1 | 95% interval | n |
| --- | --- | --- | --- |
| exact test images 0–{n_exact - 1} (the number to quote) | {_pct(r.get('top1_exact'))} | {exact_ci} | {n_exact:,} |
| {_test_set(r)} | {_pct(r.get('top1_test'))} | | {r.get('n_test', CIFAR10_NUM_TEST):,} |
{val_row}{source_row}
The interval is the Wilson score interval.{source_caveat}{_scoring_precision(r)}
'''


def _scoring_precision(r: dict[str, Any]) -> str:
    """Which arithmetic scored the test and validation rows: the test in fp32 (runs record it since 2026-12-04;
    before that the test ran in the run's precision, fp32 for every run then published), validation every epoch in
    the run's."""
    if r.get('mixed_precision') is None:
        return ''  # not recorded
    if r['mixed_precision'] == 'no':
        return ' Every row was scored in fp32.'
    if r.get('test_precision') != 'fp32':
        return f' Test and validation were scored in the run\'s precision ({_precision(r)}).'
    return f' The test rows were scored in fp32 (as `cifar-timm eval` does by default), validation in {_precision(r)}.'


def _training_data_section(f: CardFacts) -> str:
    # The JPEG cost quoted is the controlled pair of docs/jpeg_training_cost.md.
    r = f.results
    size = '×'.join(str(s) for s in f.pretrained_cfg.get('input_size', CIFAR10_INPUT_SIZE)[1:])
    if f.own_images:
        held_out = f', with {r["n_val"]:,} others held out for validation' if r.get('n_val') else ''
        return f'''## Training data
Trained on {f.dataset}, an ImageFolder tree (one folder per class: {', '.join(f.classes)}): {r.get('n_train', 0):,}
images{held_out}. Every image was resized to {size} once, before training, the way `cifar-timm predict` prepares an
image (shorter side to {size.split('×')[0]}, centre crop), then augmented as the recipe says.'''
    return f'''## Training data
Trained on the CIFAR-10 copy available to this project, **most of whose training images were JPEG-decoded**: only
{EXACT_TRAIN_IMAGES:,} of the {CIFAR10_NUM_TRAIN:,} training images have the exact original pixels; the other
{CIFAR10_NUM_TRAIN - EXACT_TRAIN_IMAGES:,} were decoded from a public JPEG copy (quality about 75, 4:2:0 chroma, about
30 dB PSNR). All labels are exact. The same holds for test images past index {N_EXACT_TEST - 1}, which is why the
top-1 to quote is the one on test images 0–{N_EXACT_TEST - 1}, the only exact test pixels (an unbiased sample: the
official test order is random). Training on this copy costs clean images some 3 points of top-1: a resnet20
trained on 7,245 training images as JPEG-decoded scored 3.3 points (95% interval 0.5–6.0) under its twin trained on
the same images' exact pixels, on clean validation images. Weights trained here land that much under what the same
recipe reaches on the original data.{_split_sentence(r)}'''


def _count(n: Optional[int]) -> str:
    return '' if n is None else f'{n:,}'


def _interval(ci: Optional[list]) -> str:
    return f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '–'


def _machine_lines(r: dict) -> str:
    """Hardware, precision and memory format: one line each, or one line per stretch of a run resumed elsewhere."""
    segments = r.get('segments') or []
    if len(segments) <= 1:
        return (f"- **Hardware:** {r.get('hardware', 'not recorded')}\n"
                f"- **Precision and memory format:** {_precision(r)}{_memory_format(r)} (a property of the\n"
                '  machine, not of the recipe: `auto` picks bf16 autocast and channels_last where they run natively)\n')
    lines = ['- **Hardware, precision and memory format:** the run was stopped and resumed (`resume=auto`) on these, '
             'with `auto` picking bf16 autocast and channels_last where they run natively:']
    lines += [f"  - from epoch {s['from_epoch'] + 1}: {s.get('hardware') or 'hardware not recorded'}, "
              f"{_precision(s)}{_memory_format(s)}" for s in segments]
    return '\n'.join(lines) + '\n'


def _precision(results: dict) -> str:
    # the config's value ('no', 'bf16', 'fp16') names a mixed-precision mode; a reader wants the arithmetic
    precision = results.get('mixed_precision')
    return {None: 'not recorded', 'no': 'fp32', 'bf16': 'bf16 autocast', 'fp16': 'fp16 autocast'}.get(precision,
                                                                                                    str(precision))


def _memory_format(results: dict) -> str:
    if results.get('channels_last') is None:
        return ''
    return ', channels_last' if results['channels_last'] else ', NCHW'


def _jpeg_gap_rows(r: dict[str, Any]) -> str:
    """Validation on its exact and JPEG-decoded parts, and the exact part after a JPEG round trip: how much the
    mostly-JPEG training data costs on the clean images users have."""
    if r.get('top1_val_exact') is None:
        return ''
    n_exact = r.get('n_val_exact')
    rows = (f'| validation, its {f"{n_exact:,} " if n_exact else ""}exact images | {_pct(r["top1_val_exact"])} | | |\n'
            f'| validation, its JPEG-decoded images | {_pct(r.get("top1_val_jpeg"))} | | |\n')
    if r.get('top1_val_exact_as_jpeg') is not None:
        rows += (f'| validation, the same exact images after a JPEG round trip (q75, 4:2:0) | '
                 f'{_pct(r["top1_val_exact_as_jpeg"])} | | |\n')
    return rows
