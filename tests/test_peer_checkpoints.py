"""The sources' own published checkpoints (../shared/peer_weights, skipped when absent) load strictly into our
architectures and score on the exact test images what its README measured with each source's own forward pass:
the proof that resnet20..56, resnet*_fattorib and se_mxresnet20 are the sources' networks. Each file goes the
user's way: `cifar-timm convert`, then `timm.create_model('local-dir:OUT', pretrained=True)`, evaluated in float32
with the normalisation config.json carries."""
from __future__ import annotations

import pytest
import timm

import cifar_timm  # noqa: F401  (registers the models)
from cifar_timm.cli import main
from cifar_timm.constants import EXACT_TEST_SLICE
from cifar_timm.convert import PUBLISHED_CHECKPOINTS, SOURCES
from cifar_timm.data import load_cifar10
from cifar_timm.evaluation import evaluate

# Correct images of the 1,017 exact ones in ../shared/peer_weights/README.md (akamaster: identical logits to its
# forward; the Keras net: within 5e-6 of Keras's, with TF 'same' padding; fattorib: its own layout's forward).
README_CORRECT = {
    'resnet20': 932, 'resnet32': 944, 'resnet44': 950, 'resnet56': 943,
    'resnet20_fattorib': 929, 'resnet32_fattorib': 935, 'resnet44_fattorib': 938, 'resnet56_fattorib': 949,
    'se_mxresnet20': 951,
}


@pytest.fixture(scope='module')
def exact_test(cifar_root):
    test = load_cifar10(cifar_root, 'test', verify_md5=False)
    return test.images[EXACT_TEST_SLICE], test.labels[EXACT_TEST_SLICE]


@pytest.fixture(scope='module', autouse=True)
def no_published_weights(tmp_path_factory):
    """Score against an empty record of our weights, so the report's 'ours' rows do not depend on hub/."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('CIFAR_TIMM_PRETRAINED_TAGS', str(tmp_path_factory.mktemp('tags') / 'none.json'))
        yield


def test_every_published_checkpoint_is_listed():
    assert sorted(c.model for c in PUBLISHED_CHECKPOINTS) == sorted(README_CORRECT)


@pytest.mark.parametrize('checkpoint', PUBLISHED_CHECKPOINTS, ids=lambda c: c.path.split('/')[-1])
def test_published_checkpoint_converts_and_scores_the_readme_number(checkpoint, peer_weights_dir, exact_test,
                                                                    tmp_path):
    if checkpoint.source == 'keras':
        pytest.importorskip('h5py', reason='h5py is not installed (pip install "cifar-timm[keras]")')
    out = tmp_path / checkpoint.model
    argv = ['convert', '--from', checkpoint.source, str(peer_weights_dir / checkpoint.path),
            '--model', checkpoint.model, '--out', str(out)]
    assert main(argv) == 0
    model = timm.create_model(f'local-dir:{out}', pretrained=True)  # strict: every tensor by name and shape
    source = SOURCES[checkpoint.source]
    assert tuple(model.pretrained_cfg['mean']) == source.mean and tuple(model.pretrained_cfg['std']) == source.std
    metrics = evaluate(model, *exact_test, device='cpu')  # float32, the pretrained_cfg's mean/std
    assert (metrics['correct'], metrics['n']) == (README_CORRECT[checkpoint.model], 1017)


def test_report_puts_each_checkpoint_beside_our_weights(peer_weights_dir, cifar_root, tmp_path):
    peers = tmp_path / 'peers'
    resnet20 = PUBLISHED_CHECKPOINTS[0]
    (peers / resnet20.path).parent.mkdir(parents=True)
    (peers / resnet20.path).symlink_to(peer_weights_dir / resnet20.path)
    page = tmp_path / 'peer_checkpoints.md'
    argv = ['convert', '--report', str(page), '--peer-dir', str(peers), '--data-dir', str(cifar_root),
            '--no-verify-md5']
    assert main(argv) == 0
    text = page.read_text()
    assert '| `resnet20` | akamaster/pytorch_resnet_cifar10 `resnet20-12fca82f.th` | bsd-2-clause | 91.64 (932) | ' \
           '89.78-93.19 | 91.73 |' in text
    assert text.count('no published weights yet') == len(PUBLISHED_CHECKPOINTS)
    assert text.count('file not found') == len(PUBLISHED_CHECKPOINTS) - 1
    assert 'no licence' in text and 'measurement only' in text
