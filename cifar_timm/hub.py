"""Where cifar-timm's published weights live, and how `pretrained=True` finds and checks them.

A published weight is a record in `cifar_timm/models/pretrained_tags.json`, keyed `'<model>.<tag>'`
(written by `cifar-timm export`). Its PretrainedCfg fields (hf_hub_id, license, ...) become the timm cfg of the
tag; the rest (sha256, size, measured results) stays in the record and is looked up by name at load time, because
timm's PretrainedCfg has no field for a checksum.

Weights for a registry name (`resnet20`, `resnet20.c10`) are taken from the first of:
  1. `$CIFAR_TIMM_WEIGHTS/<model>.<tag>/model.safetensors`
  2. `hub/<model>.<tag>/model.safetensors` of a source checkout (`$CIFAR_TIMM_HUB_DIR` names another folder)
  3. the Hugging Face Hub repo `hf_hub_id`, through timm's own download helper (cached by huggingface_hub)
and handed to timm's loader as `pretrained_cfg_overlay={'file': ...}`. `hf-hub:<repo>` names are downloaded the
same way; `local-dir:<folder>` and weights the caller names (`pretrained_cfg_overlay=dict(file=...)`) are loaded as
given. Before anything is loaded the file's size and sha256 are checked against the record, and the tensors' names
and shapes against the model being built.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import CifarTimmError

WEIGHTS_FILENAME = 'model.safetensors'
WEIGHTS_ENV = 'CIFAR_TIMM_WEIGHTS'  # a folder of `<model>.<tag>/model.safetensors`, searched first
HUB_DIR_ENV = 'CIFAR_TIMM_HUB_DIR'  # replaces the checkout's hub/ (tests, or a second copy of the repos)
TAGS_FILE_ENV = 'CIFAR_TIMM_PRETRAINED_TAGS'  # replaces the packaged pretrained_tags.json (tests)
DEFAULT_ORG = 'cifar-timm'

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_DIR = _PACKAGE_DIR.parent
PACKAGED_TAGS_FILE = _PACKAGE_DIR / 'models' / 'pretrained_tags.json'


class PretrainedWeightsError(CifarTimmError):
    """Weights asked for with `pretrained=True` cannot be used; the message says which file and what to do."""


class WeightsNotFoundError(PretrainedWeightsError):
    """No copy of the weights was found locally and the Hub could not provide one."""


class WeightsIntegrityError(PretrainedWeightsError):
    """A weights file differs from the published one (checksum, size, or not a readable safetensors file)."""


class WeightsArchitectureError(PretrainedWeightsError):
    """A weights file holds tensors of another architecture than the model being built."""


class NonFiniteWeightsError(CifarTimmError):
    """A weights file holds NaN or inf (a diverged run, or a damaged file): every prediction would be meaningless."""


# ---------------------------------------------------------------------------------------------- paths and records

def pretrained_tags_file() -> Path:
    """The pretrained-tags file in force: `$CIFAR_TIMM_PRETRAINED_TAGS` or the packaged one."""
    return Path(os.environ.get(TAGS_FILE_ENV) or PACKAGED_TAGS_FILE)


# resolved path -> (the file's stat signature, its parsed records): every family's import and every pretrained=True
# creation asks for the records; the file is read again only when it changed (or $CIFAR_TIMM_PRETRAINED_TAGS moved).
_TAGS_CACHE: dict[Path, tuple[tuple[int, int, int], dict[str, dict[str, Any]]]] = {}


def load_pretrained_tags(path: Optional[Path] = None) -> dict[str, dict[str, Any]]:
    """`{'model.tag': record}` for every published weight (an absent file means none).

    Parsed once per version of the file (keyed on inode, mtime and size, so `write_pretrained_tag` and any other
    rewrite are seen); each call returns its own copy, free to modify.
    """
    path = Path(path) if path else pretrained_tags_file()
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # as Path.exists() treats them: no file, no records
        return {}
    key, signature = path.resolve(), (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    cached = _TAGS_CACHE.get(key)
    if cached is None or cached[0] != signature:
        try:
            cached = _TAGS_CACHE[key] = (signature, json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise CifarTimmError(f'{path} is not valid JSON ({e}); restore it from version control, or delete it and '
                                 f're-run `cifar-timm export` for each published run.') from e
    return copy.deepcopy(cached[1])


def write_pretrained_tag(name_tag: str, record: dict[str, Any], path: Optional[Path] = None) -> Path:
    """Add or replace one record, keeping the others; the file is replaced atomically."""
    path = Path(path) if path else pretrained_tags_file()
    records = load_pretrained_tags(path)
    records[name_tag] = record
    write_text_atomic(path, json.dumps(dict(sorted(records.items())), indent=2) + '\n')
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and `os.replace`, so a crash never leaves half a file."""
    _write_atomic(path, text, 'w')


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`write_text_atomic` for bytes."""
    _write_atomic(path, data, 'wb')


def _write_atomic(path: Path, content: str | bytes, mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())  # the rename below is durable only once the data is on disk
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir_atomic(new: Path, final: Path) -> None:
    """Move the fully written folder `new` to `final` (same parent); an older `final` is swapped out, then deleted.

    A reader sees the old folder or the new one, never a mix: each step is one `os.replace`.
    """
    new, final = Path(new), Path(final)
    if final.exists():
        old = final.with_name(f'.{final.name}.old{os.getpid()}')
        os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, final)


def checkout_dir() -> Optional[Path]:
    """The source checkout this package runs from (None for an installed wheel)."""
    return _CHECKOUT_DIR if (_CHECKOUT_DIR / 'pyproject.toml').is_file() else None


def checkout_hub_dir() -> Optional[Path]:
    """`hub/` of the source checkout this package runs from (None for an installed wheel)."""
    root = checkout_dir()
    return root / 'hub' if root is not None else None


def hub_dir() -> Optional[Path]:
    """The folder of Hub repos in force: `$CIFAR_TIMM_HUB_DIR`, else the checkout's hub/ (None for a wheel)."""
    return Path(os.environ[HUB_DIR_ENV]) if os.environ.get(HUB_DIR_ENV) else checkout_hub_dir()


def default_hub_dir() -> Path:
    """Where `cifar-timm export` writes: `hub_dir()`, or ./hub when running from an installed wheel."""
    return hub_dir() or Path('hub')


def local_weight_folders() -> list[Path]:
    """Folders of `<model>.<tag>/` weights searched before the Hub, in order."""
    folders = [Path(os.environ[WEIGHTS_ENV])] if os.environ.get(WEIGHTS_ENV) else []
    if hub_dir() is not None:
        folders.append(hub_dir())
    return folders


def local_weight_candidates(name_tag: str) -> list[Path]:
    """Local places searched for `<model>.<tag>` weights, in order."""
    return [folder / name_tag / WEIGHTS_FILENAME for folder in local_weight_folders()]


def unrecorded_local_weights(name: str) -> list[Path]:
    """Local weight files for `name` (`model` or `model.tag`) in the places `pretrained=True` searches, whatever their
    tag: what a user who put weights there without a record expects to be found."""
    pattern = name if '.' in name else f'{name}.*'
    return [p for folder in local_weight_folders() for p in sorted(folder.glob(f'{pattern}/{WEIGHTS_FILENAME}'))]


def _unrecorded_hint(name: str) -> str:
    found = unrecorded_local_weights(name)
    if not found:
        return ''
    return (f' Found {", ".join(map(str, found))}, but no record in {pretrained_tags_file()} vouches for it '
            f'(the record `cifar-timm export RUN_DIR --tag TAG` writes, whose sha256 is checked at load): load such a '
            f"file with pretrained_cfg_overlay=dict(file='{found[0]}'), or export the run that made it.")


def check_pretrained_tag(architecture: str, tag: str) -> None:
    """timm's bare "Invalid pretrained tag", with the tags there are and any local weights saved under this one."""
    from timm.models import get_arch_pretrained_cfgs, split_model_name_tag

    known = sorted(t for n in get_arch_pretrained_cfgs(architecture) if (t := split_model_name_tag(n)[1]))
    if tag in known:
        return
    tags = f'its tags are {", ".join(known)}' if known else 'it has no published weights yet'
    raise WeightsNotFoundError(
        f'{architecture}.{tag}: no weights are published under tag {tag!r}; {tags} (`cifar-timm list --pretrained`).'
        f'{_unrecorded_hint(f"{architecture}.{tag}")}')


def check_finite_weights(state_dict: dict[str, Any], source: Any) -> None:
    """Refuse weights holding NaN or inf, naming `source` (the file) and a few of the tensors."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise NonFiniteWeightsError(
            f'{source} holds NaN or inf in {len(bad)} tensor(s) (e.g. {", ".join(bad[:3])}): the weights of a run that '
            f'diverged, or a damaged file; every prediction would be meaningless, so they are refused. Load weights '
            f'saved before the loss became NaN (an earlier checkpoint), or train again.')


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ verification

def verify_weights_file(
        path: Path, name_tag: str, record: Optional[dict[str, Any]], fix: Optional[str] = None) -> None:
    """Check size and sha256 against the published record, then that safetensors can read the file."""
    path = Path(path)
    fix = fix or _fix_hint(name_tag, path)
    size = path.stat().st_size
    if record and record.get('size') is not None and size != record['size']:
        raise WeightsIntegrityError(
            f'{name_tag}: {path} is {size:,} bytes, the published file is {record["size"]:,} bytes: '
            f'{_what_the_file_is(path, smaller=size < record["size"])}. {fix}')
    if record and record.get('sha256'):
        actual = sha256_file(path)
        if actual != record['sha256']:
            raise WeightsIntegrityError(
                f'{name_tag}: sha256 of {path} is {actual}, the published weights have {record["sha256"]}. '
                f'{fix}')
    check_safetensors_readable(path, name_tag, fix)


def _what_the_file_is(path: Path, smaller: bool) -> str:
    """What a file of the wrong size holds: damaged (unreadable) or whole weights of something else."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt') as f:
            count = len(f.keys())
    except Exception:  # noqa: BLE001  safetensors raises its own error type for every malformed file
        return 'a truncated copy or download?' if smaller else 'it is not a readable safetensors file (a damaged copy?)'
    try:
        architecture = json.loads((path.parent / 'config.json').read_text()).get('architecture')
    except (OSError, ValueError, AttributeError):
        architecture = None
    named = f', and the config.json beside it says {architecture}' if architecture else ''
    return (f'it is a complete safetensors file of {count} tensors{named}, so not a damaged download but other weights '
            f'(another architecture, tag or training run) saved under this name')


def check_safetensors_readable(path: Path, name_tag: str, fix: Optional[str] = None) -> None:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework='pt') as f:
            f.keys()
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise WeightsIntegrityError(
            f'{name_tag}: {path} is not a readable safetensors file ({e}). {fix or _fix_hint(name_tag, path)}') from e


def _fix_hint(name_tag: str, path: Path) -> str:
    hint = f'Delete {path} and load again to fetch a fresh copy from the Hub'
    return (f'{hint}, or replace it with the file published as {name_tag} (`cifar-timm export RUN_DIR` '
            f'regenerates it and its record).')


def architecture_check(
        name: str,
        path: Optional[Path],
        pretrained_num_classes: Optional[int],
        classifier: Any,
        first_conv: Any,
        strict: bool = True,
        then: Optional[Callable] = None,
) -> Callable:
    """A timm `pretrained_filter_fn` that fails clearly when the weights belong to another architecture.

    It runs where timm runs filters (after reading the file, before `load_state_dict`); a family's own filter,
    if any, runs first. The classifier may differ when the model is built with another `num_classes` and the
    first conv's input channels when built with another `in_chans`: timm adapts both afterwards.
    """
    def as_tuple(v):
        return (v,) if isinstance(v, str) else tuple(v or ())

    def check(state_dict, model):
        if then is not None:
            try:
                state_dict = then(state_dict, model)
            except TypeError:  # one-argument filters, accepted by timm's load_pretrained the same way
                state_dict = then(state_dict)
        expected = model.state_dict()
        adapted = set()
        if pretrained_num_classes is not None and getattr(model, 'num_classes', None) != pretrained_num_classes:
            adapted |= {f'{c}.{p}' for c in as_tuple(classifier) for p in ('weight', 'bias')}
        first_conv_weights = {f'{c}.weight' for c in as_tuple(first_conv)}
        missing = sorted(k for k in expected if k not in state_dict and k not in adapted) if strict else []
        unexpected = sorted(k for k in state_dict if k not in expected and k not in adapted)
        wrong_shape = []
        for k, v in state_dict.items():
            if k in expected and k not in adapted and tuple(v.shape) != tuple(expected[k].shape):
                same_but_channels = v.shape[:1] + v.shape[2:] == expected[k].shape[:1] + expected[k].shape[2:]
                if k in first_conv_weights and same_but_channels:
                    continue
                wrong_shape.append(f'{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}')
        if missing or unexpected or wrong_shape:
            problems = []
            for label, items in (('missing', missing), ('unexpected', unexpected), ('wrong shape', wrong_shape)):
                if items:
                    problems.append(f'{len(items)} {label} (e.g. {"; ".join(items[:3])})')
            raise WeightsArchitectureError(
                f'{path or "the pretrained weights"} do not fit {name}: {", ".join(problems)}. They belong to another '
                f'architecture: load them with the model they were exported from (see config.json next to the '
                f'file), or export {name} weights with `cifar-timm export RUN_DIR`.')
        check_finite_weights(state_dict, path or f'the pretrained weights of {name}')
        return state_dict
    return check


# ------------------------------------------------------------------------------------------------- resolution

def resolve_pretrained_kwargs(variant: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`build_model_with_cfg` kwargs with the weights located, verified and handed to timm's loader.

    Adds `pretrained_cfg_overlay={'file': <verified local path>}` (unless the caller already named the weights, or
    the name is `local-dir:`) and wraps `pretrained_filter_fn` in the architecture check.
    """
    from timm.models import resolve_pretrained_cfg

    kwargs = dict(kwargs)
    overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
    cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), overlay)
    architecture = cfg.architecture or variant
    name_tag = f'{architecture}.{cfg.tag}' if cfg.tag else architecture
    record = load_pretrained_tags().get(name_tag)

    path: Optional[Path] = None
    if cfg.source == 'local-dir':
        # the user named the folder: use what is there (timm picks the file); only make sure it is readable
        candidate = Path(cfg.file or '') / WEIGHTS_FILENAME
        if candidate.is_file():
            check_safetensors_readable(candidate, name_tag)
            path = candidate
    elif cfg.state_dict is not None or cfg.file or cfg.url:
        # the caller named the weights (a file, url or state_dict in pretrained_cfg or its overlay): load those
        path = Path(cfg.file) if cfg.file and cfg.state_dict is None else None
        if path is not None and not path.is_file():
            raise WeightsNotFoundError(f'{name_tag}: pretrained_cfg file {path} does not exist; pass the path of a '
                                       f'{WEIGHTS_FILENAME} (e.g. a run\'s export/{WEIGHTS_FILENAME})')
        if path is not None and path.suffix == '.safetensors':  # else timm's torch.load(weights_only=True) reads it
            check_safetensors_readable(path, name_tag, f'Pass an intact copy of {path}.')
    elif cfg.source == 'hf-hub':
        path = download_weights(cfg.hf_hub_id, name_tag, kwargs.get('cache_dir'))
        # the record vouches for this repo's main revision only; a pinned revision may differ legitimately
        verified = record if record and record.get('hf_hub_id') == cfg.hf_hub_id else None
        _verify_or_evict(path, name_tag, verified)
        overlay.update(file=str(path), source='file')
    else:
        path = next((p for p in local_weight_candidates(name_tag) if p.is_file()), None)
        if path is not None:
            verify_weights_file(path, name_tag, record)
        elif cfg.hf_hub_id:
            path = download_weights(cfg.hf_hub_id, name_tag, kwargs.get('cache_dir'))
            _verify_or_evict(path, name_tag, record)
        else:
            published = ', '.join(sorted(load_pretrained_tags())) or 'none'
            raise WeightsNotFoundError(
                f'{name_tag} has no published weights (published: {published}).'
                f' Export a trained run with `cifar-timm export RUN_DIR`, or build it with pretrained=False.'
                f'{_unrecorded_hint(name_tag)}')
        overlay['file'] = str(path)

    kwargs['pretrained_cfg_overlay'] = overlay
    kwargs['pretrained_filter_fn'] = architecture_check(
        name_tag, path, cfg.num_classes, cfg.classifier, cfg.first_conv,
        strict=kwargs.get('pretrained_strict', True), then=kwargs.get('pretrained_filter_fn'))
    return kwargs


def download_weights(hf_hub_id: str, name_tag: str, cache_dir: Any = None) -> Path:
    """`model.safetensors` of a Hub repo through timm's download helper (huggingface_hub's cache)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    from timm.models._hub import download_from_hf

    places = [str(p) for p in local_weight_candidates(name_tag)]
    searched = f'Searched locally: {", ".join(places)}. ' if places else ''
    local_fix = (f'To load local weights, put them at $CIFAR_TIMM_WEIGHTS/{name_tag}/{WEIGHTS_FILENAME} '
                 f'(export CIFAR_TIMM_WEIGHTS=/path/to/folder) or in hub/{name_tag}/ of a cifar-timm checkout.')
    try:
        return Path(download_from_hf(hf_hub_id, WEIGHTS_FILENAME, cache_dir=cache_dir))
    except LocalEntryNotFoundError as e:  # Hub unreachable (or HF_HUB_OFFLINE=1) and nothing cached
        offline = ', HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else ''
        skip_wait = '' if constants.HF_HUB_OFFLINE else (
            ' On a machine without network, set HF_HUB_OFFLINE=1: the Hub is then not tried (no wait for its '
            'retries) and only local and cached copies are used.')
        raise WeightsNotFoundError(
            f'{name_tag}: cannot reach the Hugging Face Hub for {hf_hub_id} ({constants.ENDPOINT}{offline}) and no '
            f'copy is cached. {searched}{local_fix}{skip_wait}') from e
    except (EntryNotFoundError, HfHubHTTPError) as e:
        raise WeightsNotFoundError(
            f'{name_tag}: the Hub ({constants.ENDPOINT}) has no {WEIGHTS_FILENAME} in {hf_hub_id} '
            f'({type(e).__name__}). {searched}{local_fix}') from e


def _verify_or_evict(path: Path, name_tag: str, record: Optional[dict[str, Any]]) -> None:
    """Verify a downloaded file; a bad one is removed from the cache so the next call downloads afresh."""
    fix = (f'The downloaded copy was removed from the cache. If this repeats, the Hub copy differs from the one '
           f'published with this version of cifar-timm: upgrade cifar-timm, or point $CIFAR_TIMM_WEIGHTS at a folder '
           f'holding {name_tag}/{WEIGHTS_FILENAME}.')
    try:
        verify_weights_file(path, name_tag, record, fix)
    except WeightsIntegrityError:
        blob = path.resolve()
        path.unlink(missing_ok=True)  # the snapshot entry (a symlink to the blob, or the file itself)
        blob.unlink(missing_ok=True)
        raise
