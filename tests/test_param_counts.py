"""Every registered architecture has exactly the parameter count of ../shared/specs/architectures.md.

xresnet/mxresnet 32/44/56 are derived from the spec's SE-MXResNet (code layout) counts minus the SE weights
(672 per block per stage-triple: 16->1->16, 32->2->32, 64->4->64, no biases).
"""
import pytest
import timm

import cifar_timm

SPEC_PARAMS = {
    # He et al. option A (spec §4.1)
    'resnet20': 269_722, 'resnet32': 464_154, 'resnet44': 658_586, 'resnet56': 853_018,
    'resnet110': 1_727_962, 'resnet1202': 19_421_274,
    # fattorib's own layout: downsampling at the end of stages 1 and 2 (spec §4.2)
    'resnet20_fattorib': 304_378, 'resnet32_fattorib': 498_810, 'resnet44_fattorib': 693_242,
    'resnet56_fattorib': 887_674,
    # bag-of-tricks family, seed 1 (spec §1, §2)
    'xresnet20': 273_114, 'xresnet32': 467_546, 'xresnet44': 661_978, 'xresnet56': 856_410,
    'mxresnet20': 273_114, 'mxresnet32': 467_546, 'mxresnet44': 661_978, 'mxresnet56': 856_410,
    'se_mxresnet20': 275_194,  # released-checkpoint layout (stage-1 projection, no shortcut BN)
    'se_mxresnet32': 470_906, 'se_mxresnet44': 666_682, 'se_mxresnet56': 862_458,
    'xresnet29': 320_906, 'xresnext29_2x10d': 319_186, 'xresnext29_4x6d': 317_466,
    'xresnext29_16x2d': 332_170, 'se_mxresnext29_16x2d': 364_426,
    # CIFAR experiments repo, seed 2 (spec §3)
    'vgg7_bn': 1_110_826, 'hybrid_resnet26': 310_474, 'hybrid_resnet41': 3_921_994,
    'resnext20_64x4d': 1_087_114, 'resnext26_64x4d': 3_090_058,
    'densenet86_bc_k12': 508_447, 'densenet103_bc_k16': 1_098_724,
    # Stepik report, seed 4 (spec §5)
    'cifarnet': 1_281_930, 'resnet50_4s': 8_198_954,
    # Efficient ResNets, seed 5 (spec §6)
    'efficient_resnet24': 4_697_742,
    # common baseline: torchvision ResNet-18 layout with a 3x3 s1 stem, no max-pool, 10 classes
    'resnet18_cifar': 11_173_962,
}


def test_every_spec_model_is_registered():
    assert sorted(cifar_timm.list_models()) == sorted(SPEC_PARAMS)


@pytest.mark.parametrize('name', sorted(SPEC_PARAMS))
def test_param_count_matches_spec(name):
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == SPEC_PARAMS[name]
