"""What the CPU weights campaign publishes beyond the export itself: which tag is an architecture's default, and the
JPEG-gap rows of the model card."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cifar_timm.model_card import CardFacts, render_card

REPO = Path(__file__).resolve().parents[1]


def _record(top1_val):
    return {'hf_hub_id': 'cifar-timm/x', 'license': 'apache-2.0', 'sha256': '0' * 64, 'size': 1,
            'results': {} if top1_val is None else {'top1_val': top1_val}}


def test_default_tag_is_the_best_on_validation(tmp_path):
    tags = tmp_path / 'tags.json'
    tags.write_text(json.dumps({'resnet20.he_c10': _record(91.0), 'resnet20.short_c10': _record(91.5),
                                'resnet20.odd_c10': _record(None)}))
    # timm's default tag of an architecture is its first cfg; a fresh interpreter reads the tags file at import
    code = ('import timm, cifar_timm; '
            'print(timm.models.get_pretrained_cfg("resnet20").tag, timm.list_pretrained("resnet20.*"))')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**__import__('os').environ, 'CIFAR_TIMM_PRETRAINED_TAGS': str(tags)}).stdout
    assert out.split()[0] == 'short_c10'
    assert out.index('short_c10') < out.index('he_c10') < out.index('odd_c10')


def test_card_shows_the_jpeg_gap_rows():
    results = {'top1_exact': 90.0, 'top1_exact_ci95': [88.0, 91.7], 'n_exact': 1017, 'top1_test': 85.0,
               'n_test': 10000, 'top1_val': 89.0, 'top1_val_exact': 88.5, 'top1_val_jpeg': 89.1,
               'top1_val_exact_as_jpeg': 89.3, 'n_val_exact': 823, 'epochs': 30}
    facts = CardFacts(name_tag='resnet20.short_c10', hf_hub_id='cifar-timm/resnet20.short_c10', license='apache-2.0',
                      sha256='0' * 64, params=272474, macs=40_550_000, results=results, config_yaml='model: resnet20\n',
                      pretrained_cfg={'mean': (0.5,) * 3, 'std': (0.25,) * 3}, source_top1=91.25, source_note='He et al.')
    card = render_card(facts)
    assert '| validation, its 823 exact images | 88.50% |' in card
    assert '| validation, its JPEG-decoded images | 89.10% |' in card
    assert 'after a JPEG round trip (q75, 4:2:0) | 89.30% |' in card
    assert '91.25%' in card  # the source's number beside ours
    without = render_card(CardFacts(**{**facts.__dict__, 'results': {'top1_exact': 90.0, 'top1_val': 89.0}}))
    assert 'exact images |' not in without.split('## Results')[1].split('## Training data')[0].replace(
        'exact test images', '')


def _card(**results) -> str:
    facts = CardFacts(name_tag='resnet20.short_c10', hf_hub_id='cifar-timm/resnet20.short_c10', license='apache-2.0',
                      sha256='0' * 64, params=1, macs=1, results={'top1_exact': 90.0, **results},
                      config_yaml='model: resnet20\n', pretrained_cfg={'mean': (0.5,) * 3, 'std': (0.25,) * 3})
    return render_card(facts)


def test_card_names_the_arithmetic_precision_and_memory_format():
    def card(**results):
        return _card(**results).split('**Precision and memory format:** ')[1].split(' (')[0]

    # the config says mixed_precision: 'no'; the card says what the arithmetic was
    assert card(mixed_precision='no', channels_last=True) == 'fp32, channels_last'
    assert card(mixed_precision='bf16', channels_last=False) == 'bf16 autocast, NCHW'
    assert card() == 'not recorded'


def test_card_lists_each_stretch_of_a_run_resumed_elsewhere():
    segments = [{'from_epoch': 0, 'hardware': None, 'mixed_precision': 'no', 'channels_last': True},
                {'from_epoch': 30, 'hardware': '1x CPU (Intel Xeon, AVX512, 2 threads)', 'mixed_precision': 'bf16',
                 'channels_last': True}]
    card = _card(segments=segments, mixed_precision='bf16')
    assert '  - from epoch 1: hardware not recorded, fp32, channels_last\n' in card
    assert '  - from epoch 31: 1x CPU (Intel Xeon, AVX512, 2 threads), bf16 autocast, channels_last\n' in card
    assert '**Hardware:**' not in card  # not the last machine alone


def test_card_says_in_which_precision_each_row_was_scored():
    assert 'The test rows were scored in fp32 (as `cifar-timm eval` does by default), validation in bf16 autocast.' \
        in _card(mixed_precision='bf16', test_precision='fp32')
    assert 'Every row was scored in fp32.' in _card(mixed_precision='no')  # fp32 runs scored everything in fp32
    # a bf16 run from before test_precision was recorded scored its test in bf16 too
    assert "Test and validation were scored in the run's precision (bf16 autocast)." in _card(mixed_precision='bf16')
    assert 'scored in' not in _card()  # precision not recorded: nothing claimed


def test_card_speaks_of_the_source_number_only_when_there_is_one():
    without = _card()  # cifarnet: its source reports no accuracy
    assert "The source's number" not in without
    assert 'The source reports no CIFAR-10 top-1 for this architecture.' in without
    with_source = render_card(CardFacts(
        name_tag='resnet20.short_c10', hf_hub_id='x', license='apache-2.0', sha256='0' * 64, params=1, macs=1,
        results={'top1_exact': 90.0}, config_yaml='', pretrained_cfg={}, source_top1=91.25, source_note='He et al.'))
    assert "The source's number was measured on the original CIFAR-10" in with_source
    assert 'reports no CIFAR-10 top-1' not in with_source
