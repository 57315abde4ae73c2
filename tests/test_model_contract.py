"""The timm model contract, checked on every architecture cifar-timm registers.

Each model must build through `timm.create_model`, honour the standard kwargs, expose timm's head/feature API,
train (gradients reach every parameter, also with gradient checkpointing), script, trace with plain
`torch.fx.symbolic_trace` and carry a complete CIFAR-10 pretrained cfg. Inputs are 2 images of 32x32 and models
are built as few times as possible, so the file stays cheap on a 2-core CPU. resnet1202 (600 blocks, resnet20's
code) is built once, for the forward and cfg checks only.
"""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

import cifar_timm
from cifar_timm.constants import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from cifar_timm.layers import grouped_conv

MODEL_NAMES = sorted(cifar_timm.list_models())
# Too slow to script, trace or train in a unit test; its code path is resnet20's.
SLOW_MODELS = {'resnet1202'}
FAST_NAMES = [name for name in MODEL_NAMES if name not in SLOW_MODELS]
# Architectures no paper describes (fineopia's CIFARnet exists only in its author's W&B report).
NO_PAPER = {'cifarnet'}
BATCH = 2


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py: one torch thread per module


@pytest.fixture(scope='module')
def built_models():
    """One eval-mode instance per architecture, shared by the tests that do not change the model."""
    return {}


def _built(built_models: dict, name: str) -> nn.Module:
    if name not in built_models:
        built_models[name] = timm.create_model(name).eval()
    return built_models[name]


def _images(in_chans: int = 3) -> torch.Tensor:
    return torch.randn(BATCH, in_chans, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_forward_gives_ten_logits(built_models, name):
    with torch.no_grad():
        out = _built(built_models, name)(_images())
    assert out.shape == (BATCH, 10)
    if name not in SLOW_MODELS:  # untrained, 600 blocks each adding a unit-variance branch overflow in eval mode
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_pretrained_cfg_describes_cifar10(built_models, name):
    model = _built(built_models, name)
    cfg = model.pretrained_cfg
    assert tuple(cfg['input_size']) == (3, 32, 32)
    assert cfg['crop_pct'] == 1.0
    assert tuple(cfg['mean']) == CIFAR10_MEAN and tuple(cfg['std']) == CIFAR10_STD
    assert cfg['num_classes'] == 10
    assert tuple(cfg['label_names']) == CIFAR10_CLASSES
    assert cfg.get('origin_url'), f'{name}: pretrained cfg names no origin_url'
    if name in NO_PAPER:
        assert not cfg.get('paper_ids'), f'{name} now cites a paper: drop it from NO_PAPER'
    else:
        assert cfg.get('paper_ids'), f'{name}: pretrained cfg names no paper_ids (the architecture paper)'
    first_conv = model.get_submodule(cfg['first_conv'])
    assert isinstance(first_conv, nn.Conv2d) and first_conv.in_channels == 3
    assert model.get_submodule(cfg['classifier']) is model.get_classifier()


@pytest.mark.parametrize('name', FAST_NAMES)
def test_features_head_classifier_and_groups(built_models, name):
    model = _built(built_models, name)
    x = _images()
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        expected = model(x)
    assert features.shape[1] == model.num_features == model.feature_info[-1]['num_chs']
    # head_hidden_size: num_features unless the head concatenates pools or has an MLP
    assert pre_logits.shape == (BATCH, model.head_hidden_size)
    torch.testing.assert_close(logits, expected)
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear)
    assert (classifier.in_features, classifier.out_features) == (model.head_hidden_size, 10)
    params = {n for n, _ in model.named_parameters()}
    for coarse in (False, True):
        groups = timm.models.group_parameters(model, model.group_matcher(coarse=coarse))
        assert {n for names in groups.values() for n in names} == params
        assert len(groups) > 2  # stem, blocks..., head: what layer-wise LR decay needs


@pytest.mark.parametrize('name', FAST_NAMES)
def test_num_classes_in_chans_and_drop_rate_kwargs(name):
    model = timm.create_model(name, num_classes=3, in_chans=1, drop_rate=0.5)
    assert model.num_classes == 3
    x = _images(in_chans=1)
    with torch.no_grad():
        features = model.eval().forward_features(x)
        assert model(x).shape == (BATCH, 3)
        torch.testing.assert_close(model.forward_head(features), model.forward_head(features))
        model.train()  # the dropout before the classifier now draws a new mask per call
        assert not torch.equal(model.forward_head(features), model.forward_head(features))


@pytest.mark.parametrize('name', FAST_NAMES)
def test_global_pool_kwarg_and_reset_classifier(name):
    model = timm.create_model(name, global_pool='catavgmax').eval()
    x = _images()
    with torch.no_grad():
        assert model(x).shape == (BATCH, 10)
    concat_width = model.head_hidden_size
    model.reset_classifier(10, global_pool='avg')
    # [avg, max] concatenation doubles the pooled width (for flatten-MLP heads, of the MLP's 1x1 output map)
    assert 2 * model.head_hidden_size == concat_width
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x).shape == (BATCH, model.head_hidden_size)
    model.reset_classifier(5)
    assert model.num_classes == 5 and model.get_classifier().out_features == 5
    with torch.no_grad():
        assert model(x).shape == (BATCH, 5)
    model.to(torch.float64).reset_classifier(7)  # the new layer takes the model's dtype (and device)
    assert model.get_classifier().weight.dtype == torch.float64
    with torch.no_grad():
        assert model(x.double()).shape == (BATCH, 7)


@pytest.mark.parametrize('name', FAST_NAMES)
def test_features_only_gives_one_map_per_stage(built_models, name):
    stages = _built(built_models, name).feature_info
    extractor = timm.create_model(name, features_only=True).eval()
    info = extractor.feature_info
    assert info.channels() == [f['num_chs'] for f in stages]
    assert info.reduction() == [f['reduction'] for f in stages]
    with torch.no_grad():
        maps = extractor(_images())
    assert len(maps) == len(stages)
    for fmap, chs, reduction in zip(maps, info.channels(), info.reduction()):
        assert fmap.shape == (BATCH, chs, 32 // reduction, 32 // reduction)


@pytest.mark.parametrize('name', FAST_NAMES)
def test_backward_reaches_every_parameter_also_checkpointed(name):
    model = timm.create_model(name).eval()  # eval: dropout off, so both passes compute the same function
    x = _images()

    def gradients() -> dict:
        model.zero_grad(set_to_none=True)
        model(x).logsumexp(dim=1).mean().backward()
        return {n: p.grad for n, p in model.named_parameters()}

    plain = gradients()
    missing = [n for n, g in plain.items() if g is None]
    assert not missing, f'no gradient for {missing}'
    model.set_grad_checkpointing(True)
    checkpointed = gradients()
    for n, g in plain.items():
        torch.testing.assert_close(checkpointed[n], g, msg=lambda m: f'{n}: {m}')


@pytest.mark.filterwarnings('ignore:`torch.jit.script` is deprecated:FutureWarning')
@pytest.mark.parametrize('name', FAST_NAMES)
def test_torchscript_matches_eager(built_models, name, monkeypatch):
    model = _built(built_models, name)
    x = _images()
    scripted = torch.jit.script(model)
    # TorchScript runs the eager form of the compiled layers (F.mish, ...): compare with that, bit for bit in
    # spirit; the compiled kernels' own ulp-level agreement is tests/test_fast_layers.py's job
    monkeypatch.setenv('CIFAR_TIMM_COMPILED_LAYERS', '0')
    # and narrow groups unmerged, as TorchScript runs them (merged ones sum in another order: layers' tests check them)
    monkeypatch.setattr(grouped_conv, 'FP32_MERGED_GROUP_CHANNELS', 1)
    # the profiling executor's first calls re-optimise for seconds; plain execution checks the same graph
    with torch.no_grad(), torch.jit.optimized_execution(False):
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize('name', FAST_NAMES)
def test_fx_trace_matches_eager(built_models, name):
    model = _built(built_models, name)
    x = _images()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
