"""Convert a source project's checkpoint into a cifar-timm model and write it as a timm Hub folder.

The conversion is strict: every tensor of the file maps onto one tensor of the model with the same shape (tensors
the source saves but never uses are declared in its `PeerSource.unused`), every tensor of the model is filled
(PyTorch's `num_batches_tracked` counters start at 0 where the source has none), and no value is NaN or inf.
Anything else stops the conversion with the names of the tensors at fault.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from ..hub import replace_dir_atomic, sha256_file
from .readers import ConversionError
from .sources import PUBLISHED_CHECKPOINTS, SOURCES, PeerSource

SHOWN = 5  # tensor names listed per kind of problem; the count says how many more there are


def get_source(name: str) -> PeerSource:
    if name not in SOURCES:
        raise ConversionError(f'unknown source {name!r}: use one of {", ".join(SOURCES)}')
    return SOURCES[name]


def convert_checkpoint(source_name: str, path: Path, model_name: str) -> torch.nn.Module:
    """`model_name` (a cifar-timm architecture) with the weights of `path`, a `source_name` checkpoint, in eval
    mode; its pretrained_cfg carries the source's preprocessing, licence and origin."""
    import timm

    source, path = get_source(source_name), Path(path)
    if model_name not in source.models:
        raise ConversionError(
            f'{source.name} checkpoints convert into {", ".join(source.models)}, not {model_name!r}: pass the '
            f'--model of the same depth.')
    if not path.is_file():
        raise ConversionError(f'{path} does not exist: pass the path of the {source.name} checkpoint file')
    tensors = source.read(path)
    model = timm.create_model(model_name).eval()
    state_dict = _map_tensors(source, path, tensors, model)
    model.load_state_dict(state_dict, strict=True)  # cannot fail after the mapping's checks; strict all the same
    model.pretrained_cfg = {**model.pretrained_cfg, **source_cfg(source)}
    return model


def source_cfg(source: PeerSource) -> dict:
    """What the converted weights' pretrained_cfg says about them: the source's preprocessing, licence and origin."""
    return dict(mean=source.mean, std=source.std, tag=source.name, license=source.license,
                origin_url=source.origin_url)


def _map_tensors(source: PeerSource, path: Path, tensors: dict[str, torch.Tensor],
                 model: torch.nn.Module) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    depths = tuple(len(stage) for stage in model.stages)
    state_dict: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}  # our name -> the file's
    extra, wrong_shape, not_finite = [], [], []
    for name, tensor in tensors.items():
        if any(re.fullmatch(pattern, name) for pattern in source.unused):
            continue
        target = source.rename(name, depths)
        if target is None:
            extra.append(f'{name} (no mapping rule)')
            continue
        if target not in expected:
            extra.append(f'{name} (-> {target}, not in the model)')
            continue
        if target in state_dict:
            extra.append(f'{name} (-> {target}, already filled by {origin[target]})')
            continue
        tensor = source.transform(name, tensor)
        if tuple(tensor.shape) != tuple(expected[target].shape):
            wrong_shape.append(f'{name} -> {target}: file {tuple(tensor.shape)}, model {tuple(expected[target].shape)}')
        elif tensor.is_floating_point() and not torch.isfinite(tensor).all():
            not_finite.append(f'{name} -> {target}')
        state_dict[target], origin[target] = tensor, name
    missing = []
    for target, like in expected.items():
        if target not in state_dict:
            if target.endswith('num_batches_tracked'):  # a PyTorch-only counter; eval mode never reads it
                state_dict[target] = torch.zeros_like(like)
            else:
                missing.append(target)
    problems = [f'{len(items)} {label}: {", ".join(items[:SHOWN])}'
                f'{f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""}.'
                for label, items in (('missing from the file', missing), ('extra in the file', extra),
                                     ('of the wrong shape', wrong_shape), ('holding NaN or inf', not_finite))
                if items]
    if problems:
        raise ConversionError(
            f'{path} does not convert into {model.pretrained_cfg["architecture"]} as a checkpoint of {source.repo}. '
            f'{" ".join(problems)} {_fix_hint(source, path, bool(not_finite))}')
    return state_dict


def _fix_hint(source: PeerSource, path: Path, damaged: bool) -> str:
    if damaged:
        return 'The file is damaged: download it again and compare its sha256 with the published one.'
    known = published_checkpoint(path)
    if known is not None:
        return (f'This file is the {known.source} checkpoint published for {known.model}: convert it with '
                f'--from {known.source} --model {known.model}.')
    return (f'Check that --from names the project that saved the file and that --model has its depth '
            f'({source.name} checkpoints convert into {", ".join(source.models)}).')


def published_checkpoint(path: Path):
    """The `PublishedCheckpoint` whose sha256 the file has, or None."""
    digest = sha256_file(path)
    return next((c for c in PUBLISHED_CHECKPOINTS if c.sha256 == digest), None)


def write_converted(model: torch.nn.Module, out: Path, source_name: str, checkpoint: Path,
                    force: bool = False) -> Path:
    """Write `out/` (config.json, model.safetensors, README.md) for a converted model; replaces an `out` that
    holds files only with `force`, and even then only once the new folder is complete."""
    from ..training.export import save_hf_files

    source, out = get_source(source_name), Path(out)
    if out.exists() and not out.is_dir():
        raise ConversionError(f'--out {out} is a file: name a folder (it is created)')
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConversionError(
            f'--out {out} already holds files: name a new folder, or pass --force to replace its contents.')
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.tmp{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # the cfg already carries the source's preprocessing: write it, not the architecture's defaults
        save_hf_files(model, tmp)
        (tmp / 'README.md').write_text(_readme(model, source, Path(checkpoint)))
        replace_dir_atomic(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _readme(model: torch.nn.Module, source: PeerSource, checkpoint: Path) -> str:
    name = model.pretrained_cfg['architecture']
    known = published_checkpoint(checkpoint)
    provenance = (f'the checkpoint {source.repo} published for this architecture (`{known.path.split("/")[-1]}`, '
                  f'sha256 `{known.sha256}`)') if known else f'`{checkpoint.name}` (sha256 `{sha256_file(checkpoint)}`)'
    return f"""# {name} with the weights of {source.repo}

Converted by `cifar-timm convert --from {source.name}` from {provenance}: {source.origin_url}

```python
import timm, cifar_timm
model = timm.create_model('local-dir:/path/to/this/folder', pretrained=True).eval()
cfg = timm.data.resolve_data_config(model=model)  # the source's normalisation: mean {source.mean}, std {source.std}
```

Licence: {source.license_note}
"""
