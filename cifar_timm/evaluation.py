"""Evaluate a classifier on CIFAR images held as uint8 tensors: top-1, top-5, NLL, ECE, images/s and the 95%
Wilson interval of the top-1, the numbers `cifar-timm eval` prints and the training recipes record.

The batches come from `GpuCifarLoader(train=False)`, so evaluation reads the same device-resident tensors as
training. ECE uses 15 equal-width confidence bins (Guo et al., 2017). Accuracies and ECE are in percent.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .constants import CIFAR10_MEAN, CIFAR10_STD
from .data.gpu_loader import GpuCifarLoader
from .errors import CifarTimmError
from .hub import check_finite_weights

ECE_BINS = 15


class ModelInputError(CifarTimmError):
    """The model does not take CIFAR-sized input or does not have one output per CIFAR class."""


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the accuracy `correct / n`, in percent (z=1.96: 95%)."""
    if n <= 0:
        raise ValueError('wilson_interval needs n > 0')
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def check_model_input(model: torch.nn.Module, image_size: Sequence[int]) -> None:
    """Raise ModelInputError when the model's pretrained_cfg asks for another input size than the images have."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    input_size = cfg.get('input_size')
    if input_size is not None and tuple(input_size[-2:]) != tuple(image_size):
        name = cfg.get('architecture') or type(model).__name__
        raise ModelInputError(
            f'{name} expects {tuple(input_size)} input (its pretrained_cfg) but CIFAR images are '
            f'(3, {image_size[0]}, {image_size[1]}): evaluate a CIFAR model (`cifar-timm list`), or create it with '
            f'pretrained_cfg_overlay=dict(input_size=(3, {image_size[0]}, {image_size[1]})) if it really takes them')


def evaluate(
        model: torch.nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int = 500,
        device: Union[str, torch.device] = 'cpu',
        amp_dtype: Optional[torch.dtype] = None,
        tta: bool = False,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        progress: bool = False,
) -> dict[str, Any]:
    """Metrics of `model` on uint8 (N, 3, H, W) `images` with int64 `labels`.

    The model is moved to `device` and put in eval mode for the run (its train/eval mode is restored after).
    `mean`/`std` default to the model's pretrained_cfg (the CIFAR-10 constants when it has none). `tta` averages the
    softmax of each image and its horizontal flip. Returns top1, top5, nll, ece, n, correct, top1_ci95 [lo, hi],
    images_per_s.
    """
    device = torch.device(device)
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    check_model_input(model, images.shape[-2:])
    if len(labels) == 0:
        raise CifarTimmError('no images to evaluate: pass a non-empty split or --indices range')
    loader = GpuCifarLoader(
        images, labels, batch_size, train=False, device=device,
        mean=mean or cfg.get('mean', CIFAR10_MEAN), std=std or cfg.get('std', CIFAR10_STD))
    was_training = model.training
    model.to(device).eval()
    try:
        return _run_metrics(model, loader, int(labels.max()) + 1, tta, amp_dtype, device, progress)
    finally:
        model.train(was_training)


def _run_metrics(model, loader: GpuCifarLoader, num_classes: int, tta: bool, amp_dtype, device: torch.device,
                 progress: bool) -> dict[str, Any]:
    # Sums stay on the device until the end, so the loop never waits for the GPU.
    correct1 = torch.zeros((), dtype=torch.int64, device=device)
    correct5 = torch.zeros_like(correct1)
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    bin_conf = torch.zeros(ECE_BINS, dtype=torch.float64, device=device)
    bin_correct = torch.zeros_like(bin_conf)
    n = 0
    _synchronize(device)
    start = time.perf_counter()
    bar = tqdm(total=loader.num_images, unit='img', desc='eval', disable=None if progress else True)  # None: tty only
    with torch.inference_mode(), bar:
        for step, (x, y) in enumerate(loader):
            log_probs = _log_probs(model, x, tta, amp_dtype, device, first=step == 0)
            if log_probs.shape[1] < num_classes:
                raise ModelInputError(
                    f'the model has {log_probs.shape[1]} outputs but the labels need {num_classes}: create it with '
                    f'num_classes={num_classes} (every cifar-timm model has 10)')
            top = log_probs.topk(min(5, log_probs.shape[1]), dim=1).indices
            hit = top == y[:, None]
            correct1 += hit[:, 0].sum()
            correct5 += hit.any(dim=1).sum()
            nll_sum -= log_probs.gather(1, y[:, None]).sum(dtype=torch.float64)
            confidence = log_probs.max(dim=1).values.exp().double()
            bins = (confidence * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1  # bin b holds (b/15, (b+1)/15]
            bin_conf.index_add_(0, bins, confidence)
            bin_correct.index_add_(0, bins, hit[:, 0].double())
            n += len(y)
            bar.update(len(y))
    _synchronize(device)
    elapsed = time.perf_counter() - start
    correct = int(correct1)
    return {
        'top1': 100.0 * correct / n,
        'top5': 100.0 * int(correct5) / n,
        'nll': float(nll_sum) / n,
        'ece': 100.0 * float((bin_correct - bin_conf).abs().sum()) / n,
        'n': n,
        'correct': correct,
        'top1_ci95': list(wilson_interval(correct, n)),
        'images_per_s': n / elapsed if elapsed > 0 else float('inf'),
    }


def _log_probs(model, x, tta, amp_dtype, device, first) -> torch.Tensor:
    """float32 log-probabilities of the batch (with TTA: log of the mean softmax of image and flip)."""
    try:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            log_probs = F.log_softmax(model(x).float(), dim=1)
            if tta:
                flipped = F.log_softmax(model(x.flip(3)).float(), dim=1)
                log_probs = torch.logsumexp(torch.stack([log_probs, flipped]), dim=0) - math.log(2)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as e:
        if not first:
            raise
        raise ModelInputError(
            f'the model failed on its first CIFAR batch of shape {tuple(x.shape)} ({e}): it does not take '
            f'3x32x32 input; evaluate a CIFAR model (`cifar-timm list`)') from e
    return log_probs


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def create_eval_model(
        name: str,
        pretrained: bool = False,
        checkpoint: Optional[str] = None,
        **kwargs: Any,
) -> torch.nn.Module:
    """`timm.create_model(name, pretrained=...)`, then the weights of `checkpoint` (a safetensors or torch
    state_dict file, read by timm's `load_checkpoint`), with clear errors for an unknown name or a bad file.

    A checkpoint in a training run's `export/` folder is built as its `config.json` says (num_classes, model_args,
    label_names), so a model trained on the user's own classes loads with them."""
    import timm  # cifar_timm's own import has registered its architectures with timm

    if pretrained and checkpoint:
        raise CifarTimmError('pass either --pretrained or --checkpoint, not both')
    if not timm.is_model(name):  # timm ignores the tag: resnet20.c10 is checked as resnet20
        raise CifarTimmError(f'unknown model {name!r}: `cifar-timm list` shows the CIFAR-10 models')
    if checkpoint:
        kwargs = {**export_model_kwargs(Path(checkpoint), name), **kwargs}
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except CifarTimmError:
        raise
    except RuntimeError as e:  # timm's errors for a tag or weights that do not exist
        raise CifarTimmError(f'cannot create {name} (pretrained={pretrained}): {e}; '
                             f'`cifar-timm list --pretrained` shows the weights there are') from e
    if checkpoint:
        load_checkpoint_file(model, checkpoint)
    return model


def export_model_kwargs(checkpoint: Path, name: str) -> dict[str, Any]:
    """`create_model` kwargs from the `config.json` timm's `save_for_hf` wrote beside `checkpoint` (none when there
    is none, or it describes another architecture)."""
    import json
    from timm.models import split_model_name_tag

    path = checkpoint.parent / 'config.json'
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict) or config.get('architecture') != split_model_name_tag(name)[0]:
        return {}
    kwargs = dict(config.get('model_args') or {})
    overlay = {k: v for k, v in (config.get('pretrained_cfg') or {}).items() if k in ('mean', 'std', 'label_names')}
    if 'num_classes' in config:
        kwargs['num_classes'] = overlay['num_classes'] = config['num_classes']
    if config.get('label_names'):  # where newer timm puts them
        overlay['label_names'] = config['label_names']
    return {**kwargs, 'pretrained_cfg_overlay': overlay} if overlay else kwargs


def load_checkpoint_file(model: torch.nn.Module, path: str) -> None:
    """Load a safetensors / torch state_dict file into `model`; a CifarTimmError naming the file when it fails."""
    from timm.models import load_checkpoint

    if not Path(path).is_file():
        raise CifarTimmError(f'checkpoint {path} does not exist: pass the path of a .safetensors or .pth file')
    try:
        load_checkpoint(model, str(path), strict=True)
    except Exception as e:  # corrupt file (safetensors/pickle errors) or a state_dict of another architecture
        detail = ' '.join(str(e).split())[:300] or type(e).__name__
        raise CifarTimmError(
            f'cannot load checkpoint {path} into {type(model).__name__} ({detail}): it is damaged or holds the '
            f'weights of another architecture / num_classes; pass the checkpoint written for this model') from e
    check_finite_weights(model.state_dict(), path)  # a new model's own weights are finite: any NaN came from the file
