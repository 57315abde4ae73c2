"""Knowledge distillation from a published weight or an ensemble of them (`distill.teacher`): the loss timm's task
computes, a distilled run end to end with its card, and the teachers it refuses. The teacher is the committed
resnet20.short_c10, joined by resnet20.he_c10 in an ensemble."""
from __future__ import annotations

import json

import pytest
import timm
import torch

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.constants import CIFAR10_CLASSES
from cifar_timm.hub import load_pretrained_tags
from cifar_timm.training import ConfigError, load_config, train
from cifar_timm.training.checkpoint import CheckpointError
from cifar_timm.training.distill import TeacherEnsemble, build_distillation, load_teacher
from training_runs import RESNET20, export_params, tiny

TEACHER = 'resnet20.short_c10'
ENSEMBLE = [TEACHER, 'resnet20.he_c10']


def distill_cfg(teacher=TEACHER, temperature=4.0, task_weight=0.1) -> dict:
    return {'teacher': teacher, 'temperature': temperature, 'task_weight': task_weight}


def test_a_student_equal_to_its_teacher_has_no_distillation_loss():
    # the teacher sees the student's batch, normalised the same way: identical nets give KL 0, so with task weight 0
    # the whole loss is 0, and with task weight 1 it is the label loss alone
    student = timm.create_model(TEACHER, pretrained=True).eval()
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    criterion = torch.nn.CrossEntropyLoss()
    for task_weight in (0.0, 1.0):
        task = build_distillation(student, distill_cfg(task_weight=task_weight), criterion, classes=CIFAR10_CLASSES,
                                  mean=student.pretrained_cfg['mean'], std=student.pretrained_cfg['std'],
                                  device=torch.device('cpu'), channels_last=False).eval()
        out = task(images, labels)
        assert out['kd_loss'].item() == pytest.approx(0.0, abs=1e-6)
        assert out['loss'].item() == pytest.approx(task_weight * criterion(student(images), labels).item(), abs=1e-6)


def test_the_teacher_follows_the_runs_own_normalisation():
    # a run with its own data.mean/std hands the student other inputs than the teacher was trained on; timm's task
    # converts them back, so the teacher's logits are those of the same images in its own normalisation
    teacher = load_teacher(TEACHER, CIFAR10_CLASSES)
    student = timm.create_model('resnet20')
    task = build_distillation(student, distill_cfg(), torch.nn.CrossEntropyLoss(), classes=CIFAR10_CLASSES,
                              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device=torch.device('cpu'),
                              channels_last=False)
    pixels = torch.rand(4, 3, 32, 32)
    as_run = (pixels - 0.5) / 0.25
    own_mean = torch.tensor(teacher.pretrained_cfg['mean']).view(1, 3, 1, 1)
    own_std = torch.tensor(teacher.pretrained_cfg['std']).view(1, 3, 1, 1)
    with torch.no_grad():
        seen = task.teacher(task.teacher.normalize_input(as_run, task.student_mean, task.student_std))
        expected = teacher((pixels - own_mean) / own_std)
    torch.testing.assert_close(seen, expected, atol=1e-4, rtol=1e-4)


def test_an_ensemble_teaches_the_mean_of_its_members_logits():
    # each member sees the images in its own normalisation, whatever the run's is
    members = [load_teacher(name, CIFAR10_CLASSES) for name in ENSEMBLE]
    task = build_distillation(timm.create_model('resnet20'), distill_cfg(ENSEMBLE), torch.nn.CrossEntropyLoss(),
                              classes=CIFAR10_CLASSES, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                              device=torch.device('cpu'), channels_last=True)
    assert isinstance(task.teacher.model, TeacherEnsemble) and not task.teacher.model.training
    pixels = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        seen = task.teacher(task.teacher.normalize_input((pixels - 0.5) / 0.25, task.student_mean, task.student_std))
        own = [m((pixels - torch.tensor(m.pretrained_cfg['mean']).view(1, 3, 1, 1))
                 / torch.tensor(m.pretrained_cfg['std']).view(1, 3, 1, 1)) for m in members]
    torch.testing.assert_close(seen, (own[0] + own[1]) / 2, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(own[0], own[1], atol=1e-2)  # two different teachers, so the mean is a real mix
    # the zoo's weights all use CIFAR-10's mean/std so far: a member normalised otherwise gets its own normalisation
    other = load_teacher(ENSEMBLE[1], CIFAR10_CLASSES)
    other.pretrained_cfg = {**other.pretrained_cfg, 'mean': (0.5, 0.5, 0.5), 'std': (0.25, 0.25, 0.25)}
    with torch.no_grad():
        mixed, expected = TeacherEnsemble([members[0], other])(pixels), (own[0] + other((pixels - 0.5) / 0.25)) / 2
    torch.testing.assert_close(mixed, expected, atol=1e-4, rtol=1e-4)


def test_a_distilled_run_records_its_teacher(cifar_root, tmp_path):
    out = tmp_path / 'kd'
    results = train(load_config(RESNET20, tiny(cifar_root, out, 'epochs=1', f'distill.teacher={TEACHER}',
                                               'mixed_precision=bf16', 'channels_last=true')))
    assert results['distill_teacher'] == TEACHER and results['config']['distill']['teacher'] == TEACHER
    assert json.loads((out / 'export' / 'results.json').read_text())['distill_teacher'] == TEACHER
    from cifar_timm.commands.export import export_run
    repo = export_run(out, tag='kd_test_c10', hub_dir=tmp_path / 'hub', tags_file=tmp_path / 'tags.json')
    card = (repo / 'README.md').read_text()
    assert f'**Distilled from:** `{TEACHER}` (timm\'s logit distillation: temperature 4.0, 0.1 x' in card


def test_a_resume_goes_on_only_with_the_teacher_it_started_with(cifar_root, tmp_path):
    # one epoch of two (4 steps of 16 images), checkpointed; the teacher's name and sha256 travel in the checkpoint
    out = tmp_path / 'kd'
    first = tiny(cifar_root, out, f'distill.teacher={TEACHER}', 'checkpoint.every=1', 'debug.max_steps=4')
    results = train(load_config(RESNET20, first))
    assert results['distill_teacher_sha256'] == load_pretrained_tags()[TEACHER]['sha256']
    for other in ('distill.teacher=resnet20.he_c10', 'distill.teacher=null'):
        with pytest.raises(CheckpointError, match=f'trained with teacher {TEACHER} .sha256 [0-9a-f]{{64}}.'):
            train(load_config(RESNET20, tiny(cifar_root, out, other, 'resume=auto')))
    resumed = train(load_config(RESNET20, tiny(cifar_root, out, f'distill.teacher={TEACHER}', 'resume=auto')))
    assert resumed['distill_teacher'] == TEACHER and resumed['epochs'] == 2


def test_an_ensemble_run_records_every_teacher_and_resumes_only_with_them(cifar_root, tmp_path):
    out = tmp_path / 'ens'
    teachers = f'distill.teacher=[{", ".join(ENSEMBLE)}]'
    results = train(load_config(RESNET20, tiny(cifar_root, out, teachers, 'checkpoint.every=1', 'debug.max_steps=4')))
    tags = load_pretrained_tags()
    assert results['distill_teacher'] == ENSEMBLE
    assert results['distill_teacher_sha256'] == [tags[name]['sha256'] for name in ENSEMBLE]
    sha = '.sha256 [0-9a-f]{64}.'
    with pytest.raises(CheckpointError, match=f'trained with the ensemble of {TEACHER} {sha} and resnet20.he_c10 '
                                              f'{sha}, this run has teacher {TEACHER}'):
        train(load_config(RESNET20, tiny(cifar_root, out, f'distill.teacher={TEACHER}', 'resume=auto')))
    resumed = train(load_config(RESNET20, tiny(cifar_root, out, teachers, 'resume=auto')))
    assert resumed['distill_teacher'] == ENSEMBLE and resumed['epochs'] == 2
    from cifar_timm.commands.export import export_run
    from cifar_timm.commands.recipe_costs import recipe_line
    repo = export_run(out, tag='ens_test_c10', hub_dir=tmp_path / 'hub', tags_file=tmp_path / 'tags.json')
    card = (repo / 'README.md').read_text()
    assert f'**Distilled from:** the mean logits of `{TEACHER}` and `resnet20.he_c10` (timm\'s logit' in card
    assert recipe_line(resumed['config']).endswith(f'distilled from {TEACHER} + resnet20.he_c10')


def test_a_teacher_weight_of_one_does_not_touch_the_students_training(cifar_root, tmp_path):
    # task_weight 1: the KL term's weight is 0, so the student's run is the plain run's, bit for bit
    plain, taught = tmp_path / 'plain', tmp_path / 'taught'
    train(load_config(RESNET20, tiny(cifar_root, plain, 'epochs=1')))
    train(load_config(RESNET20, tiny(cifar_root, taught, 'epochs=1', f'distill.teacher={TEACHER}',
                                     'distill.task_weight=1.0')))
    a, b = export_params(plain), export_params(taught)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize('teacher, classes, words', [
    ('resnet44', CIFAR10_CLASSES, "distill.teacher='resnet44': resnet44 has no published weights"),
    ('resnet20.nope_c10', CIFAR10_CLASSES, "no weights are published under tag 'nope_c10'"),
    ('no_such_net', CIFAR10_CLASSES, "distill.teacher='no_such_net' is not a registered model"),
    (TEACHER, ('cat', 'dog'), "the teacher must answer for the same classes in the same order"),
])
def test_unusable_teachers_are_refused_with_the_reason(teacher, classes, words):
    with pytest.raises(ConfigError, match=words.replace('(', r'\(').replace(')', r'\)')):
        load_teacher(teacher, classes)


def test_distill_keys_are_checked():
    with pytest.raises(ConfigError, match='distill.temperature'):
        load_config(RESNET20, ['distill.temperature=0'])
    with pytest.raises(ConfigError, match='distill.task_weight'):
        load_config(RESNET20, ['distill.task_weight=1.5'])
    for ensemble in ('[]', f'[{TEACHER}]', f'[{TEACHER}, {TEACHER}]'):  # an ensemble is two or more weights
        with pytest.raises(ConfigError, match=r'distill.teacher.*a list of at least 2 distinct items'):
            load_config(RESNET20, [f'distill.teacher={ensemble}'])
