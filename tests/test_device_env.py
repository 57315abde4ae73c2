"""recipes/device_env.sh, the setup every GPU-machine call sources: path, carried wheels, dataset, versions."""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Stands in for ../shared/cifar10/build.py: writes the layout's last file and counts its runs.
FAKE_BUILD = """\
import sys
from pathlib import Path
out = Path(sys.argv[1]) / 'cifar-10-batches-py'
out.mkdir(parents=True, exist_ok=True)
(out / 'test_batch').write_bytes(b'x')
runs = Path(__file__).with_name('runs')
runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
"""


def _source(tmp_path: Path, carry: Path, after: str = 'true') -> subprocess.CompletedProcess:
    env = dict(os.environ, CIFAR_TIMM_CARRY=str(carry), CIFAR_TIMM_SITE=str(tmp_path / 'site'),
               CIFAR10_DIR=str(tmp_path / 'data'), PYTHONPATH='',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}')  # python3 = this venv's
    return subprocess.run(['bash', '-c', f'source recipes/device_env.sh && {after}'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _carry_with_build(tmp_path: Path) -> Path:
    carry = tmp_path / 'carry'
    (carry / 'cifar10').mkdir(parents=True)
    (carry / 'cifar10' / 'build.py').write_text(FAKE_BUILD)
    return carry


def _tiny_wheel(folder: Path, name: str = 'carried_probe', version: str = '0.1') -> Path:
    """A valid pure-Python wheel holding one module, written by hand (no build backend needed)."""
    files = {
        f'{name}/__init__.py': b"WHERE = 'carried'\n",
        f'{name}-{version}.dist-info/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'.encode(),
        f'{name}-{version}.dist-info/WHEEL': b'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n'
                                             b'Tag: py3-none-any\n',
    }
    record = [f'{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()},'
              f'{len(data)}' for path, data in files.items()]
    record_path = f'{name}-{version}.dist-info/RECORD'
    files[record_path] = ('\n'.join(record + [f'{record_path},,']) + '\n').encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f'{name}-{version}-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_builds_the_dataset_once_and_reports_versions(tmp_path):
    carry = _carry_with_build(tmp_path)
    first = _source(tmp_path, carry, after='echo "dir=$CIFAR10_DIR"; echo "path=$PYTHONPATH"')
    assert first.returncode == 0, first.stderr
    assert (tmp_path / 'data' / 'cifar-10-batches-py' / 'test_batch').exists()
    assert f'dir={tmp_path / "data"}' in first.stdout
    assert f'path={REPO}' in first.stdout
    report = next(line for line in first.stdout.splitlines() if line.startswith('device_env: '))
    assert 'torch ' in report and 'timm ' in report and 'accelerate ' in report and '38 models' in report

    second = _source(tmp_path, carry)
    assert second.returncode == 0, second.stderr
    assert (carry / 'cifar10' / 'runs').read_text() == '1'  # already built: not built again


def test_carried_wheels_come_first_on_the_path(tmp_path):
    carry = _carry_with_build(tmp_path)
    _tiny_wheel(carry / 'wheels')
    done = _source(tmp_path, carry, after='python3 -c "import carried_probe; print(carried_probe.__file__)"; '
                                          'echo "path=$PYTHONPATH"')
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / 'site' / 'carried_probe') in done.stdout
    assert f'path={tmp_path / "site"}:{REPO}' in done.stdout


def test_nothing_to_build_from_names_the_fix(tmp_path):
    done = _source(tmp_path, tmp_path / 'no-carry')
    assert done.returncode != 0
    assert 'no dataset' in done.stderr and '../shared/cifar10' in done.stderr and 'carry' in done.stderr


@pytest.mark.parametrize('broken', ['build', 'wheel'])
def test_a_failing_step_stops_with_its_name(tmp_path, broken):
    carry = _carry_with_build(tmp_path)
    if broken == 'build':
        (carry / 'cifar10' / 'build.py').write_text('raise SystemExit(3)\n')
    else:
        (carry / 'wheels').mkdir()
        (carry / 'wheels' / 'broken-0.1-py3-none-any.whl').write_bytes(b'not a zip')
    done = _source(tmp_path, carry, after='echo reached')
    assert done.returncode != 0 and 'reached' not in done.stdout
    assert ('building CIFAR-10' if broken == 'build' else 'installing') in done.stderr
