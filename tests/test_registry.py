"""cifar-timm's names live beside timm's own: none shadows a timm built-in (timm silently replaces a name registered
twice), and every registered name builds and runs."""
import json
import subprocess
import sys

import pytest
import timm
import torch

import cifar_timm


def test_no_name_collides_with_a_timm_builtin():
    # timm's own registry, from a process that never imports cifar_timm
    script = "import json, sys, timm; assert 'cifar_timm' not in sys.modules; print(json.dumps(timm.list_models()))"
    builtin = subprocess.run([sys.executable, '-c', script], check=True, capture_output=True, text=True).stdout
    assert set(json.loads(builtin)) & set(cifar_timm.list_models()) == set()


@pytest.mark.parametrize('name', cifar_timm.list_models())
def test_every_registered_name_creates(name):
    with torch.device('meta'):  # builds the real modules without allocating weights (resnet1202 stays cheap)
        model = timm.create_model(name).eval()
    assert model.pretrained_cfg['architecture'] == name
    out = model(torch.empty(1, *model.pretrained_cfg['input_size'], device='meta'))
    assert out.shape == (1, 10)
