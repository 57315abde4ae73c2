"""Shared fixtures. The CIFAR-10 copy is built once per run from ../shared/cifar10 (or taken from
$CIFAR_TIMM_TEST_DATA, which .ci/run sets); tests that need it are skipped with the reason when neither exists, and
so are the tests of the sources' published checkpoints when ../shared/peer_weights is absent."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO_ROOT.parent / 'shared' / 'cifar10'
SHARED_PEER_WEIGHTS = REPO_ROOT.parent / 'shared' / 'peer_weights'


@pytest.fixture(scope='session')
def cifar_root(tmp_path_factory) -> Path:
    """Root folder holding `cifar-10-batches-py/` (torchvision's `root`)."""
    env_root = os.environ.get('CIFAR_TIMM_TEST_DATA')
    if env_root and (Path(env_root) / 'cifar-10-batches-py').is_dir():
        return Path(env_root)
    build_script = SHARED_CIFAR10 / 'build.py'
    if not build_script.exists():
        pytest.skip(f'no CIFAR-10 copy: set CIFAR_TIMM_TEST_DATA or provide {build_script}')
    root = tmp_path_factory.mktemp('cifar10')
    subprocess.run([sys.executable, str(build_script), str(root)], check=True, capture_output=True)
    return root


@pytest.fixture(scope='session')
def shared_cifar10_dir() -> Path:
    """../shared/cifar10 itself: the JPEG streams its build.py decodes (the built copy keeps only the pixels)."""
    if not (SHARED_CIFAR10 / 'train_scans.bin').exists():
        pytest.skip(f'no JPEG streams: {SHARED_CIFAR10} is absent')
    return SHARED_CIFAR10


@pytest.fixture(scope='session')
def peer_weights_dir() -> Path:
    """The sources' published checkpoints, as ../shared/peer_weights keeps them (see its README)."""
    if not SHARED_PEER_WEIGHTS.is_dir():
        pytest.skip(f'no peer checkpoints: {SHARED_PEER_WEIGHTS} is absent')
    return SHARED_PEER_WEIGHTS


@pytest.fixture(scope='module')
def one_thread():
    """Batch-1/2 model passes gain nothing from intra-op threads; on a shared 2-core runner OpenMP
    oversubscription makes them 10-100x slower. Modules of such passes use it with `pytestmark`."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Each test leaves torch's thread count as it found it: a leaked count of 1 once made the governor test fail
    in CI, and would slow every test after it."""
    import torch
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
