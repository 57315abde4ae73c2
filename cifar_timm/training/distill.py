"""Knowledge distillation from a published zoo weight: timm's LogitDistillationTask around the run's student.

The teacher is any weight `pretrained=True` loads (`se_mxresnext29_16x2d.short60_c10`, or an architecture's default
tag), so its sha256 is checked before use like every other load. It must answer for the student's classes, in their
order: a teacher whose classifier timm had to replace would teach noise, so that is refused rather than adapted.
The loss is timm's: task_weight x the recipe's loss + (1 - task_weight) x T^2 x KL(student/T || teacher/T), with the
teacher seeing exactly the batch the student sees (augmented, mixed).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import timm
import torch
from timm.task import DistillationTeacher, LogitDistillationTask

from ..hub import PretrainedWeightsError, load_pretrained_tags
from .config import ConfigError


def build_distillation(student: torch.nn.Module, cfg: dict[str, Any], criterion: torch.nn.Module, *,
                       classes: Sequence[str], mean: Sequence[float], std: Sequence[float], device: torch.device,
                       channels_last: bool) -> Optional[LogitDistillationTask]:
    """The distillation task of the config's `distill` section, or None without a teacher."""
    if cfg['teacher'] is None:
        return None
    teacher = load_teacher(cfg['teacher'], classes)
    if channels_last:
        teacher = teacher.to(memory_format=torch.channels_last)
    task = LogitDistillationTask(
        student_model=student,
        teacher_model=DistillationTeacher(teacher.to(device), device=device),
        criterion=criterion,
        task_loss_weight=cfg['task_weight'],
        temperature=cfg['temperature'],
        device=device,
        verbose=False,
    )
    # timm reads the student's normalisation from its pretrained_cfg; the run's own data.mean/std win
    task.student_mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    task.student_std = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return task.train()


def load_teacher(name: str, classes: Sequence[str]) -> torch.nn.Module:
    """The published weights `name`, in eval mode and frozen; refused unless they classify `classes`."""
    if not timm.is_model(name):
        raise ConfigError(f'distill.teacher={name!r} is not a registered model; name a published weight such as '
                          f'se_mxresnext29_16x2d.short60_c10 (`cifar-timm list --pretrained` shows them)')
    try:
        teacher = timm.create_model(name, pretrained=True)
    except (PretrainedWeightsError, RuntimeError) as e:  # RuntimeError: timm's "unknown pretrained tag"
        raise ConfigError(f'distill.teacher={name!r}: {e} The teacher must be a published weight; '
                          f'`cifar-timm list --pretrained` shows them') from e
    teacher_classes = list(teacher.pretrained_cfg.get('label_names') or [])
    if teacher_classes != list(classes):
        raise ConfigError(f'distill.teacher={name!r} classifies {teacher_classes or "unnamed classes"}, but this run '
                          f'trains {list(classes)}; the teacher must answer for the same classes in the same order')
    teacher.requires_grad_(False)
    return teacher.eval()


def teacher_identity(task: LogitDistillationTask) -> dict[str, Any]:
    """The teacher's published name (its tag resolved) and weights' sha256: what a checkpoint and results.json keep,
    so a resume never goes on against other weights under the same name (`cifar-timm export --force` replaces them)."""
    cfg = task.teacher.model.pretrained_cfg
    name = f'{cfg["architecture"]}.{cfg["tag"]}'
    return {'name': name, 'sha256': (load_pretrained_tags().get(name) or {}).get('sha256')}
