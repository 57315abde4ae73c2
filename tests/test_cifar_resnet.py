"""What the CIFAR ResNet family must get right beyond parameter counts (../shared/specs/architectures.md):
Keras 'same' padding and pooling, option-A shortcuts, the released SE-MXResNet20 layout, bottleneck widths,
where SE and dropout sit, and each source's init. Small models and tensors only.
"""
from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SEModule, create_conv2d

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.layers import FastMish
from cifar_timm.models.cifar_resnet import KerasSameAvgPool2d, KerasSameConv2d, ZeroPadShortcut


def _keras_same_avg_pool_reference(x: torch.Tensor, stride: int) -> torch.Tensor:
    """2x2 windows starting every `stride` cells, ceil(n / stride) of them, averaging only the cells inside."""
    n = x.shape[-1]
    out = torch.empty(*x.shape[:2], math.ceil(n / stride), math.ceil(n / stride))
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = x[..., i * stride:i * stride + 2, j * stride:j * stride + 2].mean(dim=(-2, -1))
    return out


@pytest.mark.parametrize('size', [4, 5])
@pytest.mark.parametrize('stride', [1, 2])
def test_keras_same_avg_pool_leaves_padding_out_of_the_mean(size, stride):
    x = torch.randn(2, 3, size, size)
    torch.testing.assert_close(KerasSameAvgPool2d(stride)(x), _keras_same_avg_pool_reference(x, stride))


def test_stride2_convs_pad_bottom_right_like_keras():
    conv = timm.create_model('xresnet20').stages[1][0].conv1
    x = torch.randn(1, 16, 8, 8)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)


@pytest.mark.parametrize('size', [7, 8])
@pytest.mark.parametrize('groups', [1, 4])
def test_keras_same_conv_matches_timm_conv2d_same(size, groups):
    ours = KerasSameConv2d(8, 8, 3, stride=2, groups=groups)
    timms = create_conv2d(8, 8, 3, stride=2, groups=groups, padding='same')
    timms.load_state_dict(ours.state_dict())
    x = torch.randn(1, 8, size, size)
    torch.testing.assert_close(ours(x), timms(x))


def test_keras_family_traces_with_input_size_dependent_padding():
    model = timm.create_model('xresnet20').eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(1, 3, 33, 33)  # odd sizes switch the stride-2 padding to symmetric
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


def test_option_a_shortcut_subsamples_and_zero_pads_both_sides():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()


def test_fattorib_layout_downsamples_at_the_end_of_stages_1_and_2():
    model = timm.create_model('resnet20_fattorib').eval()
    # the last block of stages 1 and 2 strides and widens on its second conv, with an option-A shortcut
    for stage, (in_chs, out_chs) in ((0, (16, 32)), (1, (32, 64))):
        last = model.stages[stage][-1]
        assert (last.conv1.in_channels, last.conv1.out_channels, last.conv1.stride) == (in_chs, in_chs, (1, 1))
        assert (last.conv2.in_channels, last.conv2.out_channels, last.conv2.stride) == (in_chs, out_chs, (2, 2))
        assert last.bn1.num_features == in_chs and isinstance(last.downsample, ZeroPadShortcut)
        assert all(block.downsample is None for block in model.stages[stage][:-1])
    # stage 3 holds n full 64-channel blocks at 8x8
    assert all(b.conv1.in_channels == 64 and b.downsample is None for b in model.stages[2])
    assert [(f['num_chs'], f['reduction']) for f in model.feature_info] == [(32, 2), (64, 4), (64, 4)]
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match='BasicBlock'):
        timm.create_model('xresnet20', stage_downsample='last')
    with pytest.raises(ValueError, match='first'):
        timm.create_model('resnet20', stage_downsample='middle')


def test_block_dropout_adds_dropout2d_after_each_block_bn_and_no_params():
    plain = timm.create_model('resnet20').eval()
    dropped = timm.create_model('resnet20', block_dropout=0.03)
    dropouts = [m for m in dropped.modules() if isinstance(m, nn.Dropout2d)]
    assert len(dropouts) == 2 * 9 and all(m.p == 0.03 for m in dropouts)
    dropped.load_state_dict(plain.state_dict())  # same tensors, strictly
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(dropped.eval()(x), plain(x))
        dropped.train()
        assert not torch.equal(dropped(x), dropped(x))


def test_block_options_are_refused_by_blocks_without_them():
    with pytest.raises(TypeError, match='block_dropout'):
        timm.create_model('xresnet20', block_dropout=0.1)
    with pytest.raises(TypeError, match='cardinality'):
        timm.create_model('resnet20', cardinality=4)


def test_se_mxresnet20_has_the_released_checkpoint_layout():
    released = timm.create_model('se_mxresnet20')
    stage1_proj = released.stages[0][0].downsample
    assert stage1_proj is not None and stage1_proj.pool.stride == 1
    assert (stage1_proj.conv.in_channels, stage1_proj.conv.out_channels) == (16, 16)
    assert not hasattr(stage1_proj, 'bn') and not hasattr(released.stages[1][0].downsample, 'bn')

    code = timm.create_model('se_mxresnet32')
    assert code.stages[0][0].downsample is None
    bn = code.stages[1][0].downsample.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)  # Keras defaults on the shortcut BN


def test_keras_family_uses_mish_se_without_bias_and_concat_pooling():
    model = timm.create_model('se_mxresnet32')
    trunk_bns = [m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and 'downsample' not in n]
    assert trunk_bns and all(m.eps == 2e-5 for m in trunk_bns)
    block = model.stages[2][1]
    assert isinstance(block.act1, FastMish) and isinstance(model.act, FastMish)  # nn.Mish's function, fused
    ses = [m for m in model.modules() if isinstance(m, SEModule)]
    assert len(ses) == 15
    assert [s.fc1.out_channels for s in ses[::5]] == [1, 2, 4]
    assert all(s.fc1.bias is None and isinstance(s.act, nn.ReLU) for s in ses)
    assert model.head_hidden_size == 2 * model.num_features == 128  # [avg, max]


@pytest.mark.parametrize('name,mid_widths,groups', [
    ('xresnet29', (16, 32, 64), 1),
    ('xresnext29_2x10d', (20, 40, 80), 2),
    ('xresnext29_4x6d', (24, 48, 96), 4),
    ('xresnext29_16x2d', (32, 64, 128), 16),
])
def test_bottleneck_width_is_floor_k_over_64_times_d_times_groups(name, mid_widths, groups):
    model = timm.create_model(name)
    for stage, mid in zip(model.stages, mid_widths):
        assert (stage[0].conv2.out_channels, stage[0].conv2.groups) == (mid, groups)
        assert stage[0].downsample is not None  # every stage's first block projects
        assert all(block.downsample is None for block in stage[1:])
    assert model.stages[0][0].downsample.pool.stride == 1


def test_efficient_resnet24_has_one_se_after_the_stem():
    model = timm.create_model('efficient_resnet24')
    ses = [m for m in model.modules() if isinstance(m, SEModule)]
    assert ses == [model.stem.attn] and model.stem.attn.fc1.bias is not None
    projections = [b.downsample for stage in model.stages for b in stage if b.downsample is not None]
    assert len(projections) == 2


def test_resnet50_4s_is_fineopia_myresnet():
    model = timm.create_model('resnet50_4s')
    assert list(model.stem._modules) == ['conv', 'act', 'norm']
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(dropouts) == 2 * (5 + 7 + 7 + 5) and all(m.p == 0.15 for m in dropouts)
    first = model.stages[0][0].downsample
    assert isinstance(first, ZeroPadShortcut) and first.stride == 1 and first.pad_before == 8


@pytest.mark.parametrize('name', ['resnet20', 'xresnet20'])
def test_zero_init_last_starts_identity_blocks_as_identity(name):
    model = timm.create_model(name, zero_init_last=True).eval()
    block = model.stages[0][1]
    x = torch.rand(2, 16, 8, 8)  # non-negative, as after a ReLU
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


def test_init_follows_each_source():
    keras = timm.create_model('xresnet20')
    conv = keras.stages[2][1].conv2.weight  # fan_in 64 * 9
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert not keras.head.fc.bias.any()
    torchvision = timm.create_model('resnet18_cifar')
    conv = torchvision.stages[3][1].conv2.weight  # fan_out 512 * 9
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.05)


def test_bad_configuration_names_the_choices():
    with pytest.raises(ValueError, match='zero_pad'):
        timm.create_model('resnet20', shortcut='option_b')
    with pytest.raises(ValueError, match='keras_he_normal'):
        timm.create_model('resnet20', weight_init='xavier')
    with pytest.raises(ValueError, match='stem_layers'):
        timm.create_model('resnet20', stem_layers=('conv', 'attn'))
