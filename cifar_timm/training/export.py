"""The export folder a finished run leaves in `<output>/export/`, which `cifar-timm export` publishes.

`config.json` and `model.safetensors` come from timm's `save_for_hf` (architecture, num_classes, pretrained_cfg,
model_args), so `timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))` and the Hub
loader read them as any timm checkpoint. `results.json` holds the measured numbers (keys fixed in INTERFACES.md).
The folder is written next to its final place and renamed in, so a reader never sees half an export.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import torch
from timm.models import save_for_hf

from ..hub import WEIGHTS_FILENAME, replace_dir_atomic

EXPORT_DIR = 'export'
RESULTS_FILE = 'results.json'


def write_export(output: Path, model: torch.nn.Module, model_args: dict[str, Any], results: dict[str, Any],
                 cfg_overlay: Optional[dict[str, Any]] = None) -> Path:
    """Write `output/export/` (config.json, model.safetensors, results.json), replacing an older export.

    `cfg_overlay` goes into config.json's pretrained cfg: the run's normalisation, or the classes of a run on the
    user's own images (num_classes, label_names), which `timm.create_model('local-dir:...')` then reads back.
    """
    final = Path(output) / EXPORT_DIR
    tmp = final.with_name(f'.{EXPORT_DIR}.tmp{os.getpid()}')
    shutil.rmtree(tmp, ignore_errors=True)
    save_hf_files(model, tmp, model_args, cfg_overlay)
    (tmp / RESULTS_FILE).write_text(json.dumps(results, indent=2) + '\n')
    replace_dir_atomic(tmp, final)
    return final


def save_hf_files(model: torch.nn.Module, folder: Path, model_args: Optional[dict[str, Any]] = None,
                  cfg_overlay: Optional[dict[str, Any]] = None) -> None:
    """config.json and model.safetensors of `model` in `folder` (timm's save_for_hf); `cfg_overlay` (preprocessing,
    tag, licence...) updates the pretrained_cfg written to config.json, not the model's own."""
    model = model.to(memory_format=torch.contiguous_format)  # safetensors refuses channels_last weights
    # save_for_hf writes config.json from model.pretrained_cfg (its data_config argument is new in timm 1.0.31)
    source_cfg = model.pretrained_cfg
    model.pretrained_cfg = {**source_cfg, **(cfg_overlay or {})}
    try:
        save_for_hf(model, folder, model_args=model_args or None, safe_serialization=True)
    finally:
        model.pretrained_cfg = source_cfg
    # safetensors creates its file owner-only (0600); give it the mode of its neighbours, as written under the umask
    os.chmod(folder / WEIGHTS_FILENAME, (folder / 'config.json').stat().st_mode & 0o777)


def git_sha() -> Optional[str]:
    """HEAD of the checkout this package runs from, with `-dirty` if tracked files changed; None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ('-dirty' if dirty else '')


def hardware(device: torch.device, num_processes: int) -> str:
    """What the run trained on, e.g. '1x NVIDIA H100 80GB HBM3' or '1x CPU (AMD EPYC, AVX2, 2 threads)' (the
    threads of each process)."""
    from ..commands.bench import describe_device
    return f'{num_processes}x {describe_device(device)}'
