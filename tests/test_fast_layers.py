"""The fast layers compute the same functions as the plain ones: fast Mish against F.mish (and it falls back to
F.mish where it cannot be compiled), the block-diagonal grouped conv against nn.Conv2d's grouped one, the Keras
'same' average pool's hand-written backward against ATen's, SqueezeExcite against timm's SEModule."""
import os
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import timm
from timm.layers import SEModule

import cifar_timm
from cifar_timm.layers import (CompiledFunction, FastMish, GroupedConv2d, block_diagonal_weight, fast_mish,
                               SqueezeExcite, grouped_conv2d, keras_same_avg_pool2d,
                               keras_same_avg_pool2d_eager)
from cifar_timm.layers import grouped_conv


def _value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad


def test_fast_mish_equals_f_mish_in_fp32_over_a_wide_range():
    x = torch.linspace(-100, 100, 400_001)
    y, g = _value_and_grad(fast_mish, x)
    y_ref, g_ref = _value_and_grad(F.mish, x)
    assert (y - y_ref).abs().max().item() <= 1e-6
    assert (g - g_ref).abs().max().item() <= 1e-6


def test_fast_mish_is_stable_at_large_magnitudes():
    x = torch.tensor([-1e30, -1e4, -88.0, 20.0, 20.5, 88.0, 1e4, 1e30, float('inf')])
    y, g = _value_and_grad(fast_mish, x)
    y_ref, _ = _value_and_grad(F.mish, x)
    torch.testing.assert_close(y, y_ref)
    assert torch.isfinite(g).all()  # ATen's backward gives NaN at +inf; the slope there is 1
    torch.testing.assert_close(g, torch.tensor([0., 0., 0., 1., 1., 1., 1., 1., 1.]), atol=1e-6, rtol=0)


def test_fast_mish_in_bf16_rounds_like_f_mish_and_keeps_the_layout():
    x = (torch.randn(4, 8, 6, 6) * 4).bfloat16().contiguous(memory_format=torch.channels_last)
    y, g = _value_and_grad(fast_mish, x)
    y_ref, g_ref = _value_and_grad(F.mish, x)
    assert y.dtype == g.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=1 / 128, atol=1e-2)
    torch.testing.assert_close(g.float(), g_ref.float(), rtol=1 / 128, atol=1e-2)


def test_fast_mish_module_is_a_drop_in_for_nn_mish():
    x = torch.randn(2, 3, 5, 5)
    assert list(FastMish(inplace=True).state_dict()) == []
    torch.testing.assert_close(FastMish()(x), nn.Mish()(x))


def test_compiled_layers_switched_off_give_the_eager_functions_exactly(monkeypatch):
    monkeypatch.setenv('CIFAR_TIMM_COMPILED_LAYERS', '0')
    x = torch.linspace(-30, 30, 10_001)
    y, g = _value_and_grad(fast_mish, x)
    y_ref, g_ref = _value_and_grad(F.mish, x)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)


def test_a_failed_compile_warns_once_and_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError('no C++ compiler here')
        return run
    monkeypatch.setattr(torch, 'compile', broken_compile)
    layer = CompiledFunction(lambda x: x * 2)
    with pytest.warns(RuntimeWarning, match='could not be compiled.*no C\\+\\+ compiler'):
        assert torch.equal(layer(torch.ones(3)), torch.full((3,), 2.))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert torch.equal(layer(torch.ones(3)), torch.full((3,), 2.))  # no second warning, no second try
    assert not layer.usable


@pytest.mark.parametrize('channels,groups,merge,stride', [
    (32, 16, None, 1), (64, 16, None, 2), (128, 16, None, 1), (24, 4, None, 1),  # all groups: one dense conv
    (32, 16, 4, 1), (64, 16, 2, 2), (24, 4, 2, 1), (32, 16, 1, 1)])             # partly merged, and unmerged
def test_block_diagonal_conv_equals_the_grouped_conv_with_its_gradients(channels, groups, merge, stride):
    torch.manual_seed(0)
    x = torch.randn(2, channels, 8, 8, dtype=torch.float64)
    w = torch.randn(channels, channels // groups, 3, 3, dtype=torch.float64)
    merged = groups if merge is None else merge

    def run(block_diagonal):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        weight = block_diagonal_weight(wi, groups, merge) if block_diagonal else wi
        y = F.conv2d(xi, weight, None, stride, 1, 1, groups // merged if block_diagonal else groups)
        y.backward(torch.cos(y.detach()))
        return y.detach(), xi.grad, wi.grad

    for got, ref in zip(run(True), run(False)):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_block_diagonal_weight_refuses_a_merge_that_does_not_divide_the_groups():
    with pytest.raises(ValueError, match='cannot merge 16 groups 3 at a time'):
        block_diagonal_weight(torch.randn(32, 2, 3, 3), 16, 3)


@pytest.mark.parametrize('amx', [True, False])
def test_narrow_groups_merge_to_what_the_cpu_runs_fastest(amx, monkeypatch):
    monkeypatch.setattr(grouped_conv, 'cpu_has_amx', lambda: amx)
    x = torch.randn(1, 32, 4, 4)

    def merge(in_per_group, groups):
        return grouped_conv.merged_groups(x, torch.randn(in_per_group * groups, in_per_group, 3, 3), groups)

    # fp32: merged up to 8 channels a group (an AVX2 register of floats), by a divisor of the groups
    assert (merge(2, 16), merge(4, 16), merge(8, 16), merge(6, 4), merge(10, 2)) == (4, 2, 1, 1, 1)
    assert merge(2, 3) == 1 and merge(2, 2) == 2 and merge(3, 4) == 2 and merge(4, 64) == 2 and merge(16, 1) == 1
    with torch.autocast('cpu', dtype=torch.bfloat16):
        if amx:  # groups of at most 4 channels run as one dense conv
            assert (merge(2, 16), merge(4, 16), merge(8, 16)) == (16, 16, 1)
        else:    # AVX-512 bf16 without AMX: the dense conv is the slowest; merged up to 8 channels, as fp32
            assert (merge(2, 16), merge(4, 16), merge(8, 16), merge(6, 4)) == (4, 2, 1, 1)
    assert grouped_conv.merged_groups(x.double(), torch.randn(32, 2, 3, 3, dtype=torch.float64), 16) == 1


def test_cpu_has_amx_reads_the_cpu_flags():
    flags = open('/proc/cpuinfo').read() if os.path.exists('/proc/cpuinfo') else ''
    assert grouped_conv.cpu_has_amx() == (' amx_bf16' in flags)


def test_a_trace_keeps_the_plain_grouped_conv():
    conv = GroupedConv2d(32, 32, 3, padding=1, groups=16, bias=False)
    x = torch.randn(2, 32, 8, 8)
    traced = torch.jit.trace(conv, x)  # what ONNX export records: one grouped conv, no weight arithmetic
    kinds = [node.kind() for node in traced.inlined_graph.nodes()]
    assert 'aten::_convolution' in kinds and 'aten::mul' not in kinds and 'aten::eye' not in kinds
    torch.testing.assert_close(traced(x), conv(x))


def test_grouped_conv_module_matches_nn_conv2d_under_bf16_autocast():
    torch.manual_seed(0)
    plain = nn.Conv2d(32, 32, 3, padding=1, groups=16, bias=False)
    fast = GroupedConv2d(32, 32, 3, padding=1, groups=16, bias=False)
    assert fast.load_state_dict(plain.state_dict()) is not None and list(fast.state_dict()) == ['weight']
    x = torch.randn(4, 32, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y_fast, y_plain = fast(x), plain(x)
    torch.testing.assert_close(y_fast.float(), y_plain.float(), rtol=2e-2, atol=2e-2)
    # fp32 outside autocast: the grouped kernel itself, the same numbers
    torch.testing.assert_close(fast(x), plain(x))
    torch.testing.assert_close(grouped_conv2d(x, plain.weight, None, (1, 1), (1, 1), 16), plain(x))


def test_every_grouped_conv_of_every_model_takes_the_merging_path(monkeypatch):
    calls = []
    real = grouped_conv.merged_groups
    monkeypatch.setattr(grouped_conv, 'merged_groups', lambda x, w, groups: calls.append(groups) or real(x, w, groups))
    models_with_groups = []
    for name in cifar_timm.list_models():
        model = timm.create_model(name).eval()
        groups = [m.groups for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        if groups:
            calls.clear()
            with torch.no_grad():
                model(torch.randn(1, 3, 32, 32))
            assert sorted(calls) == sorted(groups), f'{name}: a grouped conv bypasses layers/grouped_conv.py'
            models_with_groups.append(name)
    assert {'resnext20_64x4d', 'se_mxresnext29_16x2d'} <= set(models_with_groups)


@pytest.mark.parametrize('shape', [(3, 8, 32, 32), (2, 5, 7, 4), (2, 3, 1, 6), (1, 2, 1, 1)])
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('stride', [1, 2])
def test_keras_same_avg_pool_backward_equals_atens(shape, channels_last, stride):
    torch.manual_seed(0)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y, g = _value_and_grad(lambda t: keras_same_avg_pool2d(t, stride), x)
    y_ref, g_ref = _value_and_grad(lambda t: keras_same_avg_pool2d_eager(t, stride), x)
    assert y.shape == y_ref.shape == (shape[0], shape[1], -(-shape[2] // stride), -(-shape[3] // stride))
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(g, g_ref)
    # a gradient that is not all ones: every cell's share of each window it is in
    x = x.detach().requires_grad_()
    grad_out = torch.randn_like(y)
    keras_same_avg_pool2d(x, stride).backward(grad_out)
    torch.testing.assert_close(x.grad, torch.autograd.grad(keras_same_avg_pool2d_eager(x, stride), x, grad_out)[0])


def test_keras_same_avg_pool_backward_in_bf16_matches_atens():
    x = torch.randn(4, 16, 8, 8).bfloat16().contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(4, 16, 8, 8).bfloat16()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    keras_same_avg_pool2d(x1, 1).backward(grad_out)
    keras_same_avg_pool2d_eager(x2, 1).backward(grad_out)
    assert x1.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x1.grad.float(), x2.grad.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.filterwarnings('ignore::DeprecationWarning', 'ignore::FutureWarning')
def test_keras_same_avg_pool_traces_to_plain_ops():
    # torch.jit.trace (and ONNX export through it) would keep the autograd.Function as an opaque Python op
    x = torch.randn(1, 2, 4, 4)
    traced = torch.jit.trace(lambda t: keras_same_avg_pool2d(t, 1), x)
    assert not [node.kind() for node in traced.graph.nodes() if 'Python' in node.kind()]
    torch.testing.assert_close(traced(x), keras_same_avg_pool2d_eager(x, 1))


@pytest.mark.parametrize('shape', [(4, 32, 8, 8), (2, 16, 5, 3)])
@pytest.mark.parametrize('bias,add_maxpool', [(False, False), (True, False), (False, True)])
def test_squeeze_excite_equals_timms_se_module_with_its_gradients(shape, bias, add_maxpool):
    torch.manual_seed(0)
    plain = SEModule(shape[1], rd_ratio=1 / 16, rd_divisor=1, bias=bias, add_maxpool=add_maxpool)
    fast = SqueezeExcite(shape[1], rd_ratio=1 / 16, rd_divisor=1, bias=bias, add_maxpool=add_maxpool)
    assert fast.load_state_dict(plain.state_dict()) is not None
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    y, g = _value_and_grad(fast, x)
    y_ref, g_ref = _value_and_grad(plain, x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)  # mean is that sum and that division
    torch.testing.assert_close(g, g_ref)
    for p, p_ref in zip(fast.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad)
