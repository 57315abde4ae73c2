"""`cifar-timm list`: params and MACs agree with the models and ../shared/specs/architectures.md, patterns filter,
and published weights (a temporary pretrained-tags file, never the packaged one) are listed with their accuracy."""
import json

import pytest
import timm

from cifar_timm.cli import main
from cifar_timm.hub import TAGS_FILE_ENV

# conv+linear MACs per 32x32 image, spec §1 (2 decimals of millions)
SPEC_MACS = {'resnet20': 40.55e6, 'vgg7_bn': 87.92e6, 'densenet86_bc_k12': 126.51e6, 'cifarnet': 5.16e6}


def run_list(capsys, *argv: str):
    rc = main(['list', *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def tags_file(tmp_path, monkeypatch):
    """A pretrained-tags file in force for this test only, with one published resnet20 weight."""
    path = tmp_path / 'pretrained_tags.json'
    path.write_text(json.dumps({'resnet20.c10': {
        'hf_hub_id': 'cifar-timm/resnet20.c10',
        'results': {'top1_exact': 91.6, 'top1_exact_ci95': [89.7, 93.2], 'top1_test': 91.7},
    }}))
    monkeypatch.setenv(TAGS_FILE_ENV, str(path))
    return path


def test_json_params_and_macs_match_models_and_spec(capsys):
    rc, out, _ = run_list(capsys, '--json', *SPEC_MACS)
    assert rc == 0
    rows = {r['name']: r for r in json.loads(out)}
    assert sorted(rows) == sorted(SPEC_MACS)
    for name, macs in SPEC_MACS.items():
        assert rows[name]['params'] == sum(p.numel() for p in timm.create_model(name).parameters())
        assert rows[name]['macs'] == pytest.approx(macs, rel=1e-3)
    assert rows['vgg7_bn']['source_top1'] == 90.16
    assert rows['cifarnet']['source_top1'] is None  # the source reports none


def test_pattern_filters_and_no_match_is_a_clear_error(capsys):
    rc, out, _ = run_list(capsys, 'densenet*')
    assert rc == 0
    assert 'densenet86_bc_k12' in out and 'densenet103_bc_k16' in out and 'resnet20' not in out
    rc, _, err = run_list(capsys, 'no_such_net*')
    assert rc == 2 and 'no architecture matches' in err


def test_pretrained_lists_published_tags_with_accuracy(capsys, tags_file):
    rc, out, _ = run_list(capsys, '--pretrained', '--json')
    assert rc == 0
    [row] = json.loads(out)
    assert row['name'] == 'resnet20.c10' and row['hf_hub_id'] == 'cifar-timm/resnet20.c10'
    assert (row['top1_exact'], row['top1_exact_ci95'], row['top1_test']) == (91.6, [89.7, 93.2], 91.7)
    assert row['params'] == 269_722

    rc, out, _ = run_list(capsys, '--pretrained')
    assert 'resnet20.c10' in out and '91.60 (89.7-93.2)' in out

    rc, out, _ = run_list(capsys, '--json', 'resnet20')
    assert json.loads(out)[0]['pretrained_tags'] == ['c10']


def test_pretrained_with_none_published_says_so(capsys, tmp_path, monkeypatch):
    (tmp_path / 'empty.json').write_text('{}')
    monkeypatch.setenv(TAGS_FILE_ENV, str(tmp_path / 'empty.json'))
    rc, out, _ = run_list(capsys, '--pretrained')
    assert rc == 0 and 'No pretrained weights are published yet' in out
    rc, out, err = run_list(capsys, '--pretrained', '--json')
    assert json.loads(out) == [] and 'No pretrained weights' in err
