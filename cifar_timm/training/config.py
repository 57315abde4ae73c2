"""Training configuration: the defaults, YAML composition and dotted `key=value` overrides.

The one place that parses recipe configs. A recipe YAML may name parents with `defaults: [base.yaml, ...]`
(paths relative to the file); parents merge first, in order, then the file itself, then command-line overrides.
Every key must exist in `DEFAULTS` below, so a typo is an error that names the key, not a silently ignored value;
every value must fit the key's type and range in `SCHEMA` (bool keys need no entry: their default says it), checked
before a run writes anything. YAML is read with YAML 1.2 floats, so `1e-3` and `1e6` are numbers, not strings.

Why not OmegaConf structured configs: they would bring a dependency and move DEFAULTS into dataclasses, yet still
need our `defaults:` composition (that is Hydra's), and checks for the ranges and for keys that take a word or a
number (`cpu_threads: auto | N`), which OmegaConf's types cannot state; the YAML float fix is one resolver here.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from ..errors import CifarTimmError
from .config_types import Float, Int, InvalidValue, ListOf, Mapping, Null, Text, choice, either, inferred


class ConfigError(CifarTimmError):
    """A recipe config or override that cannot be used as written."""


# Every key a recipe may set, with its default. Comments say what each means; recipes/README.md lists them too.
DEFAULTS: dict[str, Any] = {
    'model': None,              # a registered timm model name, e.g. resnet20
    'model_args': {},           # kwargs for timm.create_model (user kwargs win over the entrypoint's)
    'pretrained': False,        # start from the zoo's weights (a new classifier when the classes differ)
    'seed': 0,
    'deterministic': False,     # torch deterministic algorithms (exact resume / DDP checks), slower on GPU
    'epochs': 180,
    'batch_size': 128,          # GLOBAL batch per optimizer step: processes x per-process batch x grad_accum_steps
    'grad_accum_steps': 1,
    'output': None,             # run folder; default runs/<config name>
    'resume': None,             # null | auto (latest checkpoint in output) | path to a checkpoint file
    'mixed_precision': 'auto',  # auto (bf16 where the CPU/GPU has it natively, else no) | no | bf16 | fp16 (loss scaling)
    'compile': False,           # torch.compile the model
    'channels_last': 'auto',    # auto (true on CPU and CUDA) | true | false
    'cpu_threads': 'auto',      # CPU only: auto (all cores, fewer while other processes keep cores busy) | N
    'cpu_allocator': 'keep',    # CPU only: keep (freed activations stay in the heap, no page faults) | system
    'sync_bn': False,           # SyncBatchNorm across processes; GPU only (ignored with a warning on CPU)
    'data': {
        'format': 'cifar10',    # cifar10 | imagefolder (the user's images: dir/<class name>/<image>, any size)
        'dir': 'data',          # root holding cifar-10-batches-py/, or the ImageFolder tree
        'test_dir': None,       # imagefolder: a tree with the same classes, tested once at the end
        'name': None,           # imagefolder: the dataset's name in the model card (default: dir's folder name)
        'verify_md5': True,     # official md5 sums; the shared JPEG-rebuilt copy needs false
        'download': False,
        'val_size': 5000,       # held-out train images used for every decision; 0 = train on all 50k
        'split_seed': 0,
        'limit': None,          # first N training images (after the split), for smoke runs
        'val_limit': None,      # first N validation images
        'test_limit': None,     # first N test images (the exact slice 0-1016 is always inside unless smaller)
        'loader': 'gpu',        # gpu (GpuCifarLoader: data resident on the device) | torchvision
        'num_workers': 2,       # torchvision loader only
        'pad': 4,
        'pad_mode': 'constant', # constant (zero) | reflect
        'flip': True,
        'cutout': 0,
        'mean': None,           # null = the model's pretrained_cfg (official CIFAR-10 statistics)
        'std': None,
    },
    'optimizer': {
        'name': 'sgd',          # any timm optimizer: momentum (classical), sgd/nesterov (Nesterov), adamw, ...;
                                # lookahead_<name> wraps it
        'lr': 0.1,
        'body_lr_scale': 1.0,   # LR factor of all but the classifier (fine-tuning pretrained weights: e.g. 0.1)
        'momentum': 0.9,
        'weight_decay': 1e-4,
        'filter_bias_and_bn': False,  # timm: no weight decay on 1-d params (biases, norms)
        'no_weight_decay': [],  # extra fnmatch patterns of parameter names kept out of weight decay
        'lookahead_k': 6,       # timm Lookahead defaults
        'lookahead_alpha': 0.5,
        'kwargs': {},           # anything else for the timm optimizer (betas, eps, ...)
    },
    'scheduler': {
        'name': 'cosine',       # cosine | multistep | step | none (any timm create_scheduler_v2 name)
        'per_iteration': False, # update the LR every optimizer step instead of every epoch
        'warmup_epochs': 0,
        'warmup_lr': 0.0,
        'warmup_prefix': False, # warm-up comes before the schedule's own epochs (cosine over epochs - warmup)
        'min_lr': 0.0,
        'milestones': [],       # multistep: first epochs (0-based) at the decayed LR, as torch's MultiStepLR
        'decay_epochs': None,   # step
        'decay_rate': 0.1,
    },
    'loss': {
        'label_smoothing': 0.0,
    },
    'mixup': {
        'name': 'none',         # none | timm (timm Mixup/CutMix) | label_preserving (seed-1 recipe, spec 2.4)
        'alpha': 0.4,           # label_preserving: lambda ~ Beta(alpha + 1, alpha)
        'mixup_alpha': 0.8,     # timm
        'cutmix_alpha': 0.0,
        'prob': 1.0,
        'switch_prob': 0.5,
        'mode': 'batch',
    },
    'distill': {                # knowledge distillation (timm's LogitDistillationTask)
        'teacher': None,        # null | a published weight to learn from, e.g. se_mxresnext29_16x2d.short60_c10 |
                                # a list of them, whose mean logits teach
        'temperature': 4.0,     # softmax temperature of both sides of the KL term
        'task_weight': 0.1,     # loss = task_weight * the recipe's loss + (1 - task_weight) * T^2 * KL
    },
    'ema': {
        'enabled': False,
        'decay': 0.9998,
        'warmup': False,
        'export': True,         # export (and evaluate on test) the EMA weights instead of the raw ones
    },
    'clip_grad': {
        'mode': None,           # null | norm | value | agc (timm dispatch_clip_grad)
        'value': None,
    },
    'checkpoint': {
        'every': 1,             # epochs between checkpoints (the last epoch always checkpoints)
        'keep': 2,              # newest checkpoints kept
    },
    'log': {
        'progress': True,       # tqdm bar with ETA and img/s (main process)
        'tensorboard': True,
        'check_every': 20,      # steps between NaN/inf checks of the loss (one device sync each)
    },
    'debug': {
        'nan_at_step': None,    # test hook: make the loss NaN at this optimizer step
        'max_steps': None,      # stop after this many optimizer steps in total (smoke tests)
    },
}


# The type and range of every key of DEFAULTS that is not a plain bool, by dotted name.
_COUNT = Int(lo=1)
_FRACTION = Float(lo=0, hi=1)
_RATE = Float(lo=0)
SCHEMA: dict[str, object] = {
    'model': Text('a registered timm model name, e.g. resnet20'),
    'model_args': Mapping(),
    'seed': Int(0, 2**32 - 1),
    'epochs': _COUNT,
    'batch_size': _COUNT,
    'grad_accum_steps': _COUNT,
    'output': Text('a folder path (null: runs/<config name>)'),
    'resume': either(Null('start afresh'), Text('auto or the path of a checkpoint file')),
    'mixed_precision': choice('auto', 'no', 'bf16', 'fp16'),
    'channels_last': choice('auto', True, False),
    'cpu_threads': either(choice('auto'), _COUNT),
    'cpu_allocator': choice('keep', 'system'),
    'data.dir': Text('a folder path'),
    'data.format': choice('cifar10', 'imagefolder'),
    'data.test_dir': either(Null('no test set'), Text('a folder path (an ImageFolder tree)')),
    'data.name': either(Null("the data folder's name"), Text("the dataset's name for the model card")),
    'data.val_size': Int(0, 50_000),
    'data.split_seed': Int(0, 2**32 - 1),
    'data.limit': either(Null('all training images'), _COUNT),
    'data.val_limit': either(Null('all validation images'), Int(lo=0)),
    'data.test_limit': either(Null('all test images'), _COUNT),
    'data.loader': choice('gpu', 'torchvision'),
    'data.num_workers': Int(lo=0),
    'data.pad': Int(0, 32),
    'data.pad_mode': choice('constant', 'reflect'),
    'data.cutout': Int(0, 32),
    'data.mean': either(Null("the model's pretrained_cfg"), ListOf(Float(0, 1), length=3, example='[0.5, 0.5, 0.5]')),
    'data.std': either(Null("the model's pretrained_cfg"),
                       ListOf(Float(0, 1, lo_open=True), length=3, example='[0.25, 0.25, 0.25]')),
    'optimizer.name': Text('a timm optimizer name, e.g. momentum, sgd, adamw, lookahead_momentum'),
    'optimizer.lr': _RATE,
    'optimizer.momentum': _FRACTION,
    'optimizer.weight_decay': _RATE,
    'optimizer.no_weight_decay': ListOf(Text('an fnmatch pattern'), example="['*.bias']"),
    'optimizer.lookahead_k': _COUNT,
    'optimizer.lookahead_alpha': Float(0, 1, lo_open=True),
    'optimizer.kwargs': Mapping(),
    'optimizer.body_lr_scale': Float(lo=0, lo_open=True),
    'scheduler.name': Text('a timm scheduler name: cosine, multistep, step, none, ...'),
    'scheduler.warmup_epochs': Int(lo=0),
    'scheduler.warmup_lr': _RATE,
    'scheduler.min_lr': _RATE,
    'scheduler.milestones': ListOf(Int(lo=0), example='[90, 135]'),
    'scheduler.decay_epochs': either(Null("timm's default"), Float(lo=0, lo_open=True)),
    'scheduler.decay_rate': Float(lo=0, lo_open=True),
    'loss.label_smoothing': Float(0, 1),
    'mixup.name': choice('none', 'timm', 'label_preserving'),
    'mixup.alpha': Float(lo=0, lo_open=True),
    'mixup.mixup_alpha': _RATE,
    'mixup.cutmix_alpha': _RATE,
    'mixup.prob': _FRACTION,
    'mixup.switch_prob': _FRACTION,
    'mixup.mode': choice('batch', 'pair', 'elem'),
    'distill.teacher': either(Null('no distillation'),
                              Text('a published weight, e.g. se_mxresnext29_16x2d.short60_c10'),
                              ListOf(Text('a published weight'), min_length=2, distinct=True,
                                     example='[se_mxresnet20.src_c10, se_mxresnext29_16x2d.short60_c10] (their mean '
                                             'logits teach)')),
    'distill.temperature': Float(lo=0, lo_open=True),
    'distill.task_weight': _FRACTION,
    'ema.decay': _FRACTION,
    'clip_grad.mode': choice(None, 'norm', 'value', 'agc'),
    'clip_grad.value': either(Null('no clipping'), Float(lo=0, lo_open=True)),
    'checkpoint.every': _COUNT,
    'checkpoint.keep': Int(lo=0),
    'log.check_every': _COUNT,
    'debug.nan_at_step': either(Null('off'), Int(lo=0)),
    'debug.max_steps': either(Null('off'), _COUNT),
}


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus YAML 1.2's floats: PyYAML (YAML 1.1) reads `1e-3`, `1e6` and `1.0e6` as strings."""


_YamlLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float', re.compile(r'^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$'),
    list('-+0123456789.'))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def load_config(path: Optional[str | Path] = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Defaults <- the YAML at `path` (with its `defaults:` parents) <- `key=value` overrides."""
    config = copy.deepcopy(DEFAULTS)
    name = None
    if path is not None:
        path = Path(path)
        try:
            merge(config, _read_composed(path, seen=()))
        except ConfigError as e:
            raise ConfigError(f'{path} (or a file in its `defaults:`): {e}') from None
        name = path.stem
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(config, key, value)
    if config['output'] is None:
        config['output'] = str(Path('runs') / (name or str(config['model'])))
    if config['mixed_precision'] is False:  # YAML 1.1 reads a bare `no` as false; Accelerate's name is 'no'
        config['mixed_precision'] = 'no'
    validate(config)
    return config


def _read_composed(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f'config {path} includes itself through `defaults:`; remove the cycle')
    if not path.is_file():
        raise ConfigError(f'config file {path} does not exist; pass an existing recipes/configs/NAME.yaml')
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f'config {path} is not valid YAML ({e}); fix the syntax') from e
    if not isinstance(data, dict):
        raise ConfigError(f'config {path} must be a mapping of keys to values')
    parents = data.pop('defaults', []) or []
    if isinstance(parents, str):
        parents = [parents]
    composed: dict[str, Any] = {}
    for parent in parents:
        merge(composed, _read_composed(path.parent / parent, seen + (path,)), check=False)
    merge(composed, data, check=False)
    return composed


def merge(base: dict[str, Any], update: dict[str, Any], check: bool = True, prefix: str = '') -> dict[str, Any]:
    """Recursive in-place merge; with `check`, every key of `update` must already exist in `base`."""
    for key, value in update.items():
        dotted = f'{prefix}{key}'
        if check and key not in base:
            raise ConfigError(f'unknown config key `{dotted}`; known keys here: {", ".join(sorted(base))}')
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _free_form(dotted):
            merge(base[key], value, check, prefix=dotted + '.')
        else:
            base[key] = copy.deepcopy(value)
    return base


def _free_form(dotted: str) -> bool:
    """Mappings whose keys are the user's (passed through to timm), not ours."""
    return dotted in ('model_args', 'optimizer.kwargs')


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ('a.b', value parsed as YAML, so 1e-3, true, null and [1, 2] work)."""
    if '=' not in item:
        raise ConfigError(f'override `{item}` is not key=value; write e.g. epochs=1 or data.dir=/path')
    key, raw = item.split('=', 1)
    key = key.strip().lstrip('-')
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in place; a mapping value merges into the section (keys checked like a YAML file's)."""
    parts = key.split('.')
    node, known = config, True
    for i, part in enumerate(parts[:-1]):
        if known and part not in node:
            raise ConfigError(f'unknown config key `{key}`; see recipes/README.md for the keys')
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f'`{".".join(parts[:i + 1])}` is a value, not a section; set it as a whole')
        known = known and not _free_form('.'.join(parts[:i + 1]))
    last = parts[-1]
    if known and last not in node:
        raise ConfigError(f'unknown config key `{key}`; see recipes/README.md for the keys')
    if isinstance(node.get(last), dict) and not _free_form(key):
        if not isinstance(value, dict):
            raise ConfigError(f'`{key}` is a section; set one of its keys, e.g. {key}.{next(iter(node[last]))}=...')
        merge(node[last], value, check=known, prefix=key + '.')
    else:
        node[last] = value


def get_dotted(config: dict[str, Any], key: str) -> Any:
    node = config
    for part in key.split('.'):
        node = node[part]
    return node


def validate(config: dict[str, Any]) -> None:
    """Check every key against SCHEMA (floats given as integers become floats), then the keys that go together."""
    if not config['model']:
        raise ConfigError('no `model` set; give a registered timm model name in the config or as model=resnet20')
    for key in _leaf_keys(DEFAULTS):
        spec = spec_for(key)
        parent_key, _, last = key.rpartition('.')
        parent = get_dotted(config, parent_key) if parent_key else config
        try:
            parent[last] = spec.parse(parent[last])
        except InvalidValue as e:
            raise ConfigError(f'`{key}` is {parent[last]!r}; allowed: {e}') from None
    if config['batch_size'] % config['grad_accum_steps']:
        raise ConfigError(f'batch_size {config["batch_size"]} is not divisible by grad_accum_steps '
                          f'{config["grad_accum_steps"]}; batch_size is the global batch per optimizer step')
    if config['clip_grad']['mode'] and config['clip_grad']['value'] is None:
        raise ConfigError('clip_grad.mode is set but clip_grad.value is null; set e.g. clip_grad.value=1.0')
    resume = config['resume']
    if resume not in (None, 'auto') and not Path(str(resume)).is_file():
        raise ConfigError(f'resume={resume} is not a checkpoint file; use resume=auto or a path under '
                          f'<output>/checkpoints/')
    output = Path(config['output'])
    blocking = next((p for p in (output, *output.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError(f'output={output}: {blocking} is a file, not a folder; the run folder must be a new or '
                          f'existing folder, so choose another output=... (the file is left as it is)')


def spec_for(key: str):
    """The type of a dotted key: its SCHEMA entry, else the type of its default (a bool, or a key added without one)."""
    spec = SCHEMA.get(key) or inferred(get_dotted(DEFAULTS, key))
    if spec is None:
        raise KeyError(f'config key {key} has neither a SCHEMA entry nor a default that shows its type')
    return spec


def _leaf_keys(section: dict[str, Any], prefix: str = '') -> list[str]:
    keys = []
    for key, value in section.items():
        dotted = f'{prefix}{key}'
        if isinstance(value, dict) and not _free_form(dotted):
            keys += _leaf_keys(value, dotted + '.')
        else:
            keys.append(dotted)
    return keys


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)
