"""timm's feature API on every registered architecture: `forward_intermediates`, `prune_intermediate_layers` and
`features_only=True, feature_cls='getter'`, checked the way timm's tests/test_models.py checks its own models
(`test_model_forward_intermediates`, `test_model_forward_intermediates_features`), plus the semantics those tests
leave implicit: last-n and negative indices, `stop_early`, `norm` (the final norm of the pre-activation ResNets),
and pruning that keeps the asked-for features bit for bit.

Inputs are one or two 32x32 images and every model is built once (pruning works on a copy), so the file stays cheap
on a 2-core CPU; resnet1202 (600 blocks) takes a few seconds of it.
"""
from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
import torch.nn as nn
from timm.models._features import FeatureGetterNet

import cifar_timm

MODEL_NAMES = sorted(cifar_timm.list_models())
# Untrained in eval mode, resnet1202's 600 unit-variance branches overflow to inf/NaN; with every branch starting
# at zero (timm's zero_init_last) its maps stay finite and comparable, and the code path is resnet20's.
MODEL_ARGS = {'resnet1202': dict(zero_init_last=True)}
PREACT = {'xresnet20', 'se_mxresnet20', 'xresnext29_16x2d'}  # representatives with a final norm-act


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py: one torch thread per module


@pytest.fixture(scope='module')
def built_models():
    return {}


def _built(built_models: dict, name: str) -> nn.Module:
    if name not in built_models:
        torch.manual_seed(0)
        built_models[name] = timm.create_model(name, **MODEL_ARGS.get(name, {})).eval()
    return built_models[name]


def _images(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _assert_same(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_forward_intermediates(built_models, name):
    """timm's test_model_forward_intermediates, on every cifar-timm model."""
    model = _built(built_models, name)
    feature_info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    assert len(feature_info.channels()) >= 3
    x = _images()
    with torch.no_grad():
        output, intermediates = model.forward_intermediates(x, output_fmt='NCHW')
        assert len(intermediates) == len(feature_info.channels())
        for chs, reduction, o in zip(feature_info.channels(), feature_info.reduction(), intermediates):
            assert o.shape[1] == chs
            assert o.shape[2] <= math.ceil(32 / reduction) + 1 and o.shape[3] <= math.ceil(32 / reduction) + 1
            assert o.shape[0] == 1
            assert not torch.isnan(o).any()
        torch.testing.assert_close(output, model.forward_features(x))
        model.set_grad_checkpointing()
        try:
            output3, intermediates3 = model.forward_intermediates(x)
        finally:
            model.set_grad_checkpointing(False)
    torch.testing.assert_close(output3, output, rtol=1e-4, atol=1e-5)
    _assert_same(intermediates3, intermediates)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_getter_features_match_the_stage_outputs(built_models, name):
    """timm's test_model_forward_intermediates_features: features_only with feature_cls='getter'."""
    torch.manual_seed(0)
    getter = timm.create_model(name, features_only=True, feature_cls='getter', **MODEL_ARGS.get(name, {})).eval()
    model = _built(built_models, name)
    assert getter.feature_info.channels() == [f['num_chs'] for f in model.feature_info]
    assert getter.feature_info.reduction() == [f['reduction'] for f in model.feature_info]
    x = _images()
    with torch.no_grad():
        outputs = getter(x)
        _assert_same(outputs, model.forward_intermediates(x, intermediates_only=True))  # same seed, same weights
    for o, chs, reduction in zip(outputs, getter.feature_info.channels(), getter.feature_info.reduction()):
        assert o.shape == (1, chs, 32 // reduction, 32 // reduction)
    # the getter wraps a model pruned of its head: nothing past the features is left to run
    assert not any('head.fc' in n or 'pre_logits' in n for n, _ in getter.named_parameters())


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_indices_select_like_timm(built_models, name):
    model = _built(built_models, name)
    x = _images()
    n = len(model.feature_info)
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
        _assert_same(model.forward_intermediates(x, indices=2, intermediates_only=True), every[-2:])  # last n
        _assert_same(model.forward_intermediates(x, indices=[0, -1], intermediates_only=True), [every[0], every[-1]])
        # stop_early: no stage after index 1 runs, and the returned map is stage 1's
        final, early = model.forward_intermediates(x, indices=[-n + 1], stop_early=True)
        _assert_same(early, [every[1]])
        torch.testing.assert_close(final, every[1])
        for bad in (n + 1, 0, [n], [-n - 1]):
            with pytest.raises(AssertionError, match='out of range'):
                model.forward_intermediates(x, indices=bad)


@pytest.mark.parametrize('name', sorted(PREACT) + ['resnet20', 'vgg7_bn'])
def test_norm_applies_the_final_norm_to_the_last_stage(built_models, name):
    model = _built(built_models, name)
    x = _images()
    with torch.no_grad():
        raw = model.forward_intermediates(x, intermediates_only=True)
        normed = model.forward_intermediates(x, norm=True, intermediates_only=True)
        features = model.forward_features(x)
    _assert_same(normed[:-1], raw[:-1])  # the earlier stages have no norm of their own
    torch.testing.assert_close(normed[-1], features)
    if name in PREACT:  # a pre-activation trunk ends un-normalised: the features are BN + act of the last stage
        assert not torch.allclose(raw[-1], features)
    else:
        torch.testing.assert_close(raw[-1], features)


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_prune_keeps_the_features_asked_for(built_models, name):
    model = _built(built_models, name)
    x = _images()
    n = len(model.feature_info)
    with torch.no_grad():
        every = model.forward_intermediates(x, intermediates_only=True)
    pruned = copy.deepcopy(model)
    kept = pruned.prune_intermediate_layers(indices=[0, -2])
    assert kept == [0, n - 2]
    assert len(pruned.stages) == n - 1
    assert pruned.num_classes == 0 and pruned.num_features == model.feature_info[n - 2]['num_chs']
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        _assert_same(pruned.forward_intermediates(x, indices=kept, intermediates_only=True), [every[0], every[-2]])
        # the head is gone: the model's output is the last kept stage's map, unpooled
        torch.testing.assert_close(pruned(x), every[-2])


@pytest.mark.parametrize('name', sorted(PREACT) + ['resnet20', 'cifarnet'])
def test_prune_to_the_end_keeps_norm_and_head_when_asked(built_models, name):
    model = _built(built_models, name)
    x = _images()
    with torch.no_grad():
        logits, features = model(x), model.forward_features(x)
    keep_head = copy.deepcopy(model)
    assert keep_head.prune_intermediate_layers(indices=1, prune_head=False) == [len(model.feature_info) - 1]
    with torch.no_grad():
        torch.testing.assert_close(keep_head(x), logits)  # nothing was pruned
    no_norm = copy.deepcopy(model)
    no_norm.prune_intermediate_layers(indices=1, prune_norm=True)
    with torch.no_grad():
        raw_last = model.forward_intermediates(x, indices=1, intermediates_only=True)[0]
        torch.testing.assert_close(no_norm(x), raw_last)  # no norm, no head: the last stage's raw output
        with_norm = copy.deepcopy(model)
        with_norm.prune_intermediate_layers(indices=1)
        torch.testing.assert_close(with_norm(x), features)


def test_getter_with_norm_and_negative_out_indices():
    """timm's FeatureGetterNet options: out_indices counted from the end, norm=True (final norm kept, not pruned)."""
    torch.manual_seed(0)
    model = timm.create_model('xresnet20').eval()
    reference = copy.deepcopy(model)
    getter = FeatureGetterNet(model, out_indices=(-2, -1), norm=True).eval()
    assert getter.out_indices == [1, 2]
    assert getter.feature_info.channels() == [32, 64]
    x = _images(2)
    with torch.no_grad():
        middle, last = getter(x)
        torch.testing.assert_close(last, reference.forward_features(x))
        torch.testing.assert_close(middle, reference.forward_intermediates(x, indices=[1], intermediates_only=True)[0])


@pytest.mark.parametrize('name', ['resnet20', 'hybrid_resnet26', 'vgg7_bn', 'cifarnet', 'densenet86_bc_k12'])
def test_user_feature_cfg_merges_with_the_family_default(name):
    # one of each family's creator: the user's feature_cfg keys win, the family's stay where the user is silent
    torch.manual_seed(0)
    whole = timm.create_model(name, features_only=True).eval()
    picked = timm.create_model(name, features_only=True, feature_cfg=dict(out_indices=(1,))).eval()
    picked.load_state_dict(whole.state_dict(), strict=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        [one] = picked(x)
        torch.testing.assert_close(one, whole(x)[1])
    assert picked.feature_info.out_indices == (1,)
