"""Knowledge distillation from published zoo weights: timm's LogitDistillationTask around the run's student.

The teacher is any weight `pretrained=True` loads (`se_mxresnext29_16x2d.short60_c10`, or an architecture's default
tag), so its sha256 is checked before use like every other load, or a list of them, which teach as one: the mean of
their logits (on validation two of the zoo's weights together beat the better of them by about 1.6 points). Each must
answer for the student's classes, in their order: a teacher whose classifier timm had to replace would teach noise,
so that is refused rather than adapted. The loss is timm's: task_weight x the recipe's loss + (1 - task_weight) x T^2
x KL(student/T || teacher/T), with the teacher seeing exactly the batch the student sees (augmented, mixed).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

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
    teacher = (load_teacher(cfg['teacher'], classes) if isinstance(cfg['teacher'], str)
               else TeacherEnsemble([load_teacher(name, classes) for name in cfg['teacher']]))
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


class TeacherEnsemble(torch.nn.Module):
    """Several teachers answering as one, with the mean of their logits. It takes images in [0, 1] (its pretrained_cfg
    says so, for timm's DistillationTeacher to convert the student's inputs to) and normalises them for each member
    as that member was trained."""

    def __init__(self, members: Sequence[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        # one (channels, 1, 1) row per member: it broadcasts over a batch (N, channels, H, W)
        for key in ('mean', 'std'):
            values = torch.tensor([member.pretrained_cfg[key] for member in members])
            self.register_buffer(f'{key}s', values[:, :, None, None], persistent=False)
        self.pretrained_cfg = {'mean': (0.0, 0.0, 0.0), 'std': (1.0, 1.0, 1.0)}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = [member((pixels - mean) / std) for member, mean, std in zip(self.members, self.means, self.stds)]
        return torch.stack(logits).mean(0)


TeacherIdentity = Union[dict[str, Any], list[dict[str, Any]]]


def teacher_identity(task: LogitDistillationTask) -> TeacherIdentity:
    """The teacher's published name (its tag resolved) and weights' sha256, or a list of them for an ensemble: what a
    checkpoint and results.json keep, so a resume never goes on against other weights under the same name
    (`cifar-timm export --force` replaces them)."""
    teacher = task.teacher.model
    if isinstance(teacher, TeacherEnsemble):
        return [_identity(member) for member in teacher.members]
    return _identity(teacher)


def _identity(model: torch.nn.Module) -> dict[str, Any]:
    name = f'{model.pretrained_cfg["architecture"]}.{model.pretrained_cfg["tag"]}'
    return {'name': name, 'sha256': (load_pretrained_tags().get(name) or {}).get('sha256')}


def teacher_results(teacher: TeacherIdentity) -> dict[str, Any]:
    """results.json's record of the teacher: its name and sha256, or the lists of them for an ensemble."""
    if isinstance(teacher, list):
        return {'distill_teacher': [t['name'] for t in teacher],
                'distill_teacher_sha256': [t['sha256'] for t in teacher]}
    return {'distill_teacher': teacher['name'], 'distill_teacher_sha256': teacher['sha256']}


def teacher_words(teacher: Optional[TeacherIdentity]) -> str:
    """A teacher's identity for an error message."""
    if teacher is None:
        return 'no teacher'
    if isinstance(teacher, list):
        return 'the ensemble of ' + ' and '.join(f'{t["name"]} (sha256 {t["sha256"]})' for t in teacher)
    return f'teacher {teacher["name"]} (sha256 {teacher["sha256"]})'
