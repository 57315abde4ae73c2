"""evaluate() against a plain loop over the same images, the Wilson interval, and the clear errors for models
that do not fit CIFAR input."""
from __future__ import annotations

import math

import pytest
import timm
import torch

from torchvision.transforms import Normalize

import cifar_timm  # noqa: F401  (registers resnet20)
from cifar_timm.constants import CIFAR10_MEAN, CIFAR10_STD
from cifar_timm.data import load_cifar10
from cifar_timm.evaluation import ModelInputError, evaluate, wilson_interval

N_EVAL = 200


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    return Normalize(CIFAR10_MEAN, CIFAR10_STD)(images_uint8.float() / 255)


@pytest.fixture(scope='module')
def test_slice(cifar_root):
    split = load_cifar10(cifar_root, 'test', verify_md5=False)
    return split.images[:N_EVAL], split.labels[:N_EVAL]


@pytest.fixture(scope='module')
def resnet20():
    torch.manual_seed(0)
    model = timm.create_model('resnet20')
    # Calibrate BatchNorm on random data so the random-weight logits are spread out rather than all alike.
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        model(torch.randn(64, 3, 32, 32))
    return model.eval()


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(100 * 1.96 ** 2 / (10 + 1.96 ** 2))
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(49.0, abs=0.05), pytest.approx(94.33, abs=0.05))
    lo, hi = wilson_interval(900, 1017)
    assert lo < 100 * 900 / 1017 < hi
    assert wilson_interval(3, 10) == pytest.approx(tuple(100 - v for v in reversed(wilson_interval(7, 10))))


def test_evaluate_matches_a_plain_loop(resnet20, test_slice):
    images, labels = test_slice
    metrics = evaluate(resnet20, images, labels, batch_size=64)
    with torch.no_grad():
        logits = torch.cat([resnet20(normalise(images[i:i + 50])) for i in range(0, N_EVAL, 50)])
    log_probs = logits.log_softmax(dim=1)
    top2 = logits.topk(2, dim=1).values
    near_ties = int((top2[:, 0] - top2[:, 1] < 1e-4).sum())  # argmax may differ there by rounding alone
    correct = int((logits.argmax(dim=1) == labels).sum())
    assert abs(metrics['correct'] - correct) <= near_ties
    assert metrics['n'] == N_EVAL and metrics['top1'] == pytest.approx(100 * metrics['correct'] / N_EVAL)
    top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(dim=1).float().mean() * 100
    assert metrics['top5'] == pytest.approx(float(top5), abs=100 * near_ties / N_EVAL + 1e-6)
    assert metrics['nll'] == pytest.approx(float(-log_probs.gather(1, labels[:, None]).mean()), rel=1e-4)
    confidence, prediction = log_probs.exp().max(dim=1)
    ece = 0.0
    for b in range(15):
        in_bin = (confidence > b / 15) & (confidence <= (b + 1) / 15)
        if in_bin.any():
            gap = (prediction[in_bin] == labels[in_bin]).float().mean() - confidence[in_bin].mean()
            ece += float(in_bin.float().mean() * gap.abs())
    assert metrics['ece'] == pytest.approx(100 * ece, abs=1e-3)
    assert metrics['top1_ci95'] == pytest.approx(list(wilson_interval(metrics['correct'], N_EVAL)))
    assert metrics['images_per_s'] > 0


def test_evaluate_with_tta_and_mode_restored(resnet20, test_slice):
    images, labels = test_slice
    resnet20.train()
    metrics = evaluate(resnet20, images[:32], labels[:32], batch_size=16, tta=True)
    assert resnet20.training
    resnet20.eval()
    assert 0 <= metrics['top1'] <= metrics['top5'] <= 100 and math.isfinite(metrics['nll'])


def test_wrong_number_of_outputs_is_a_clear_error(test_slice):
    images, labels = test_slice
    model = timm.create_model('resnet20', num_classes=5)
    with pytest.raises(ModelInputError, match='num_classes=10'):
        evaluate(model, images[:16], labels[:16])


def test_wrong_input_size_is_a_clear_error(test_slice):
    images, labels = test_slice
    model = timm.create_model('resnet20', pretrained_cfg_overlay=dict(input_size=(3, 224, 224)))
    with pytest.raises(ModelInputError, match=r'expects \(3, 224, 224\) input'):
        evaluate(model, images[:16], labels[:16])
