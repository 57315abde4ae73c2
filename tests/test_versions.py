"""The timm floor: declared once for pip and once for the import-time check, and the check's message."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm

from cifar_timm._timm_version import MIN_TIMM, check_timm_version

tomllib = pytest.importorskip('tomllib')  # Python >= 3.11


def test_import_check_and_pyproject_agree():
    project = tomllib.loads((Path(__file__).resolve().parents[1] / 'pyproject.toml').read_text())['project']
    floor = next(d for d in project['dependencies'] if re.match(r'timm\b', d))
    assert floor == 'timm>=' + '.'.join(map(str, MIN_TIMM))


def test_installed_timm_passes():
    check_timm_version(timm.__version__)


@pytest.mark.parametrize('version', ['1.0.9', '0.9.16', '1.0.26'])
def test_older_timm_is_refused_with_the_fix(version):
    with pytest.raises(ImportError, match=rf'needs timm >= 1\.0\.27, but timm {re.escape(version)} .*pip install -U'):
        check_timm_version(version)


@pytest.mark.parametrize('version', ['1.0.27', '1.0.31', '1.0.28.dev0', '1.1.0', '2.0.0rc1'])
def test_same_or_newer_timm_is_accepted(version):
    check_timm_version(version)
