"""Published weights: export, `pretrained=True` resolution and checks, the Hub through a loopback server, publish.

Nothing here touches the network or the repository's hub/ and pretrained_tags.json: every test exports into a
temporary hub folder and tags file ($CIFAR_TIMM_HUB_DIR, $CIFAR_TIMM_PRETRAINED_TAGS) and the Hub is
`tests/hub_server.py` on 127.0.0.1. Model loading runs in subprocesses, because timm registers the pretrained tags and
huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE when they are imported. To stay cheap, each subprocess runs several
named cases and prints their outcomes as JSON; the tests assert on them one behaviour at a time.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from safetensors.torch import load_file, save_file

import cifar_timm
from cifar_timm import cli
from cifar_timm.commands.export import export_run
from cifar_timm.errors import CifarTimmError
from cifar_timm.hub import local_weight_candidates, sha256_file

from hub_server import LoopbackHub

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME_TAG = 'resnet20.c10'
HUB_ID = f'cifar-timm/{NAME_TAG}'

# Runs in every scenario subprocess: `load(name)` builds a pretrained model and reports whether its logits equal
# those of a resnet20 holding the reference weights (argv[1]) loaded by hand, or which error it raised.
PRELUDE = '''
import json, os, sys
import torch, timm
import cifar_timm
from safetensors.torch import load_file

reference = timm.create_model('resnet20').eval()
reference.load_state_dict(load_file(sys.argv[1]))
x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    expected = reference(x)

def load(name, **kwargs):
    try:
        model = timm.create_model(name, pretrained=True, **kwargs).eval()
    except Exception as e:
        user_error = isinstance(e, cifar_timm.errors.CifarTimmError)
        return {'error': type(e).__name__, 'message': str(e), 'user_error': user_error}
    with torch.no_grad():
        same = torch.equal(model(x), expected)
    return {'same_logits': same, 'file': model.pretrained_cfg.get('file'), 'tag': model.pretrained_cfg.get('tag'),
            'hf_hub_id': model.pretrained_cfg.get('hf_hub_id')}

out = {}
'''


def free_port() -> int:
    """A port nothing listens on (bound, then released): a Hub that is down."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scenario_env(tmp: Path, tags_file: Path, endpoint: str) -> dict[str, str]:
    """A clean environment: this machine's HF and cifar-timm settings dropped, a fresh cache under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(('HF_', 'HUGGINGFACE', 'CIFAR_TIMM_'))}
    (tmp / 'no_hub').mkdir(parents=True, exist_ok=True)
    env.update(HF_HOME=str(tmp / 'hf_home'), HF_HUB_CACHE=str(tmp / 'hf_cache'), HF_ENDPOINT=endpoint,
               HF_HUB_DISABLE_TELEMETRY='1', HF_HUB_DISABLE_PROGRESS_BARS='1', HF_HUB_DISABLE_XET='1',
               CIFAR_TIMM_PRETRAINED_TAGS=str(tags_file), CIFAR_TIMM_HUB_DIR=str(tmp / 'no_hub'))
    return env


def run_scenario(body: str, reference: Path, env: dict[str, str], background: bool = False):
    """Run PRELUDE + body in a fresh interpreter; returns the JSON it prints as `out` (or the Popen)."""
    code = PRELUDE + body + '\nprint(json.dumps(out))\n'
    cmd = [sys.executable, '-c', code, str(reference)]
    if background:
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def finish(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def make_run_folder(run_dir: Path, model_name: str = 'resnet20', seed: int = 0) -> Path:
    """A finished-run folder as recipes/train.py leaves it, written with the training code's own export function."""
    from cifar_timm.training.export import write_export
    torch.manual_seed(seed)
    model = timm.create_model(model_name)
    config = {'model': model_name, 'epochs': 1, 'data': {'val_size': 5000, 'limit': 256}}
    results = {'model': model_name, 'top1_val': 11.0, 'top1_test': 10.5, 'top5_test': 50.0, 'nll_test': 2.3,
               'ece_test': 1.0, 'top1_exact': 10.2, 'top1_exact_ci95': [8.5, 12.2], 'n_exact': 1017, 'n_test': 10000,
               'epochs': 1, 'train_time_s': 12.5, 'hardware': '1x CPU', 'mixed_precision': 'no', 'git_sha': 'abc',
               'config': config}
    write_export(run_dir, model, {}, results)
    (run_dir / 'config.yaml').write_text(yaml.safe_dump(config))
    (run_dir / 'metrics.csv').write_text('epoch,lr,train_loss,train_top1,val_loss,val_top1,epoch_time_s,images_per_s\n'
                                         '0,0.1,2.3,10.0,2.3,11.0,12.5,20.0\n')
    return run_dir


# ------------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope='module')
def published(tmp_path_factory):
    """A resnet20 run exported to a temporary hub folder and tags file; plus a resnet32 export (another arch)."""
    tmp = tmp_path_factory.mktemp('published')
    hub_dir, tags_file = tmp / 'hub', tmp / 'pretrained_tags.json'
    repo = export_run(make_run_folder(tmp / 'run'), hub_dir=hub_dir, tags_file=tags_file)
    other = make_run_folder(tmp / 'run32', 'resnet32') / 'export'
    return {'tmp': tmp, 'hub_dir': hub_dir, 'tags_file': tags_file, 'repo': repo,
            'weights': repo / 'model.safetensors', 'resnet32_weights': other / 'model.safetensors'}


@pytest.fixture(scope='module', autouse=True)
def offline_case(published, tmp_path_factory):
    """`pretrained=True` with the Hub down and no local copy. huggingface_hub retries a refused connection for
    about 23 s before giving up, so this starts with the module (autouse) and is collected by its test at the end."""
    tmp = tmp_path_factory.mktemp('offline')
    env = scenario_env(tmp, published['tags_file'], f'http://127.0.0.1:{free_port()}')
    proc = run_scenario("out['offline'] = load('resnet20.c10')\n", published['weights'], env, background=True)
    yield lambda: dict(finish(proc), cache=[str(p) for p in (tmp / 'hf_cache').rglob('*') if p.is_file()])
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope='module')
def local_cases(published, tmp_path_factory):
    """Every local-resolution case in one interpreter, with the Hub down (any network use would fail them)."""
    tmp = tmp_path_factory.mktemp('local')
    weights, name = published['weights'], NAME_TAG
    good = tmp / 'weights_env'
    shutil.copytree(published['repo'], good / name)
    data = weights.read_bytes()
    bad_sha, truncated = tmp / 'bad_sha', tmp / 'truncated'
    (bad_sha / name).mkdir(parents=True)
    (bad_sha / name / 'model.safetensors').write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    (truncated / name).mkdir(parents=True)
    (truncated / name / 'model.safetensors').write_bytes(data[: len(data) // 2])
    wrong_arch = tmp / 'wrong_arch'
    shutil.copytree(published['repo'], wrong_arch)
    shutil.copyfile(published['resnet32_weights'], wrong_arch / 'model.safetensors')
    larger = tmp / 'larger'  # a whole resnet32 export saved under resnet20.c10: bigger, and not a damaged download
    shutil.copytree(published['resnet32_weights'].parent, larger / name)
    unrecorded = tmp / 'unrecorded'  # weights put where pretrained=True looks, for a tag no record vouches for
    shutil.copytree(published['resnet32_weights'].parent, unrecorded / 'resnet32.c10')
    random_bytes = tmp / 'random.safetensors'
    random_bytes.write_bytes(os.urandom(4096))
    nan_weights = tmp / 'nan.safetensors'
    state = load_file(weights)
    state['head.fc.bias'][3] = float('nan')
    save_file(state, nan_weights)

    body = f'''
out['published'] = sorted(cifar_timm.list_models(pretrained=True))
os.environ['CIFAR_TIMM_WEIGHTS'] = {str(good)!r}
os.environ['CIFAR_TIMM_HUB_DIR'] = {str(published['hub_dir'])!r}
out['env_var'] = load('resnet20.c10')
del os.environ['CIFAR_TIMM_WEIGHTS']
out['hub_dir'] = load('resnet20')
out['local_dir'] = load('local-dir:' + {str(published['repo'])!r})
os.environ['CIFAR_TIMM_WEIGHTS'] = {str(bad_sha)!r}
out['sha_mismatch'] = load('resnet20.c10')
os.environ['CIFAR_TIMM_WEIGHTS'] = {str(truncated)!r}
out['truncated'] = load('resnet20.c10')
del os.environ['CIFAR_TIMM_WEIGHTS']
out['wrong_arch_dir'] = load('local-dir:' + {str(wrong_arch)!r})
out['wrong_arch_file'] = load('resnet20', pretrained_cfg_overlay=dict(file={str(published['resnet32_weights'])!r}))
out['unpublished'] = load('resnet56')
os.environ['CIFAR_TIMM_WEIGHTS'] = {str(larger)!r}
out['larger_other_arch'] = load('resnet20.c10')
os.environ['CIFAR_TIMM_WEIGHTS'] = {str(unrecorded)!r}
out['unrecorded_untagged'] = load('resnet32')
out['unrecorded_tag'] = load('resnet32.c10')
out['unknown_tag'] = load('resnet20.c99')
out['random_bytes_file'] = load('resnet20', pretrained_cfg_overlay=dict(file={str(random_bytes)!r}))
out['missing_file'] = load('resnet20', pretrained_cfg_overlay=dict(file={str(tmp / 'nowhere.safetensors')!r}))
out['nan_file'] = load('resnet20', pretrained_cfg_overlay=dict(file={str(nan_weights)!r}))
'''
    env = scenario_env(tmp, published['tags_file'], f'http://127.0.0.1:{free_port()}')
    results = run_scenario(body, weights, env)
    return results, {'good': good, 'bad_sha': bad_sha, 'truncated': truncated, 'wrong_arch': wrong_arch,
                     'larger': larger, 'unrecorded': unrecorded, 'random_bytes': random_bytes, 'nan': nan_weights,
                     'tmp': tmp}


@pytest.fixture
def hub_server(tmp_path):
    with LoopbackHub(tmp_path / 'hub_root') as hub:
        (tmp_path / 'hub_root').mkdir()
        yield hub


# ------------------------------------------------------------------------------------------------------- export

def test_export_writes_a_hub_repo_and_its_record(published):
    repo, record = published['repo'], json.loads(published['tags_file'].read_text())[NAME_TAG]
    assert sorted(p.name for p in repo.iterdir()) == ['README.md', 'config.json', 'model.safetensors', 'results.json']
    config = json.loads((repo / 'config.json').read_text())
    assert config['architecture'] == 'resnet20' and config['num_classes'] == 10
    assert config['pretrained_cfg']['tag'] == 'c10'
    assert config['pretrained_cfg']['mean'] == list(cifar_timm.CIFAR10_MEAN)
    assert record['hf_hub_id'] == HUB_ID and record['license'] == 'apache-2.0'
    assert record['sha256'] == sha256_file(repo / 'model.safetensors')
    assert record['size'] == (repo / 'model.safetensors').stat().st_size
    assert record['params'] == 269_722 and record['macs'] == 40_551_040  # spec: 40.55M conv+linear MACs
    assert record['results']['top1_exact'] == 10.2 and record['results']['top1_exact_ci95'] == [8.5, 12.2]
    assert record['results']['top1_test'] == 10.5


def test_export_model_card(published):
    card = (published['repo'] / 'README.md').read_text()
    _, front, body = card.split('---\n', 2)
    meta = yaml.safe_load(front)
    assert meta['library_name'] == 'timm' and meta['license'] == 'apache-2.0' and meta['datasets'] == ['cifar10']
    assert 'image-classification' in meta['tags']
    metrics = meta['model-index'][0]['results'][0]['metrics']
    assert [m['value'] for m in metrics] == [10.2, 10.5]
    for text in ('import cifar_timm', f"timm.create_model('{NAME_TAG}', pretrained=True).eval()", 'hf-hub:' + HUB_ID,
                 '0.4914', '269,722', '40.55', 'JPEG-decoded', '8,068', '[8.50, 12.20]', '10.50%', '12 s', '1x CPU',
                 '91.25%', 'val_size: 5000'):
        assert text in body, text


def test_export_records_the_normalisation_a_run_used(tmp_path):
    from cifar_timm.training.export import write_export
    model = timm.create_model('resnet20')
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    export = write_export(tmp_path, model, {}, {'model': 'resnet20'}, cfg_overlay={'mean': mean, 'std': std})
    config = json.loads((export / 'config.json').read_text())
    assert config['pretrained_cfg']['mean'] == list(mean) and config['pretrained_cfg']['std'] == list(std)
    assert model.pretrained_cfg['mean'] == cifar_timm.CIFAR10_MEAN  # the model itself is left as it was


def test_export_weights_have_the_mode_of_the_other_files(tmp_path):
    export = make_run_folder(tmp_path / 'run') / 'export'
    modes = {p.name: p.stat().st_mode & 0o777 for p in export.iterdir()}
    assert modes['model.safetensors'] == modes['config.json'] == modes['results.json'], modes  # not 0600


def test_export_of_a_damaged_run_export_names_the_file(tmp_path, capsys):
    run = make_run_folder(tmp_path / 'run')
    weights = run / 'export' / 'model.safetensors'
    weights.write_bytes(os.urandom(2048))
    code = cli.main(['export', str(run), '--hub-dir', str(tmp_path / 'hub'),
                     '--tags-file', str(tmp_path / 'tags.json')])
    err = capsys.readouterr().err
    assert code == 2 and f'{weights} is not a readable safetensors file' in err and 'Traceback' not in err
    assert 'resume=auto' in err and not (tmp_path / 'hub').exists() and not (tmp_path / 'tags.json').exists()


def test_export_rejects_incomplete_run_and_keeps_other_records(tmp_path):
    (tmp_path / 'not_a_run').mkdir()
    with pytest.raises(CifarTimmError, match='missing .*model.safetensors'):
        export_run(tmp_path / 'not_a_run', hub_dir=tmp_path / 'hub', tags_file=tmp_path / 'tags.json')
    tags_file = tmp_path / 'tags.json'
    tags_file.write_text(json.dumps({'resnet32.c10': {'hf_hub_id': 'cifar-timm/resnet32.c10'}}))
    run = make_run_folder(tmp_path / 'run')
    export_run(run, hub_dir=tmp_path / 'hub', tags_file=tags_file)
    assert sorted(json.loads(tags_file.read_text())) == ['resnet20.c10', 'resnet32.c10']
    # other weights under the same tag are not overwritten silently
    other = make_run_folder(tmp_path / 'run2', seed=1)
    with pytest.raises(CifarTimmError, match='--force'):
        export_run(other, hub_dir=tmp_path / 'hub', tags_file=tags_file)
    export_run(other, hub_dir=tmp_path / 'hub', tags_file=tags_file, force=True)
    assert json.loads(tags_file.read_text())[NAME_TAG]['sha256'] == sha256_file(other / 'export' / 'model.safetensors')


# ------------------------------------------------------------------------------------------- local resolution

def test_local_search_order(monkeypatch, tmp_path):
    """$CIFAR_TIMM_WEIGHTS first, then hub/ of this checkout ($CIFAR_TIMM_HUB_DIR replaces it)."""
    monkeypatch.delenv('CIFAR_TIMM_WEIGHTS', raising=False)
    monkeypatch.delenv('CIFAR_TIMM_HUB_DIR', raising=False)
    weights = Path(NAME_TAG) / 'model.safetensors'
    assert local_weight_candidates(NAME_TAG) == [REPO_ROOT / 'hub' / weights]
    monkeypatch.setenv('CIFAR_TIMM_WEIGHTS', str(tmp_path / 'w'))
    assert local_weight_candidates(NAME_TAG) == [tmp_path / 'w' / weights, REPO_ROOT / 'hub' / weights]
    monkeypatch.setenv('CIFAR_TIMM_HUB_DIR', str(tmp_path / 'h'))
    assert local_weight_candidates(NAME_TAG) == [tmp_path / 'w' / weights, tmp_path / 'h' / weights]


def test_published_tags_are_listed(local_cases):
    results, _ = local_cases
    assert NAME_TAG in results['published']


def test_env_var_folder_comes_first(local_cases):
    results, paths = local_cases
    case = results['env_var']
    assert case['same_logits'] and case['file'] == str(paths['good'] / NAME_TAG / 'model.safetensors')
    assert case['tag'] == 'c10' and case['hf_hub_id'] == HUB_ID


def test_hub_folder_of_checkout(local_cases, published):
    case = local_cases[0]['hub_dir']  # plain 'resnet20' resolves to its default tag, c10
    assert case['same_logits'] and case['file'] == str(published['weights'])


def test_local_dir_source(local_cases):
    case = local_cases[0]['local_dir']
    assert case['same_logits'] and case['tag'] == 'c10'


def test_sha256_mismatch_is_refused(local_cases):
    results, paths = local_cases
    case = results['sha_mismatch']
    assert case['error'] == 'WeightsIntegrityError' and case['user_error']
    assert NAME_TAG in case['message'] and 'sha256' in case['message']
    assert str(paths['bad_sha'] / NAME_TAG / 'model.safetensors') in case['message']
    assert 'cifar-timm export' in case['message']


def test_truncated_file_is_refused(local_cases):
    results, paths = local_cases
    case = results['truncated']
    assert case['error'] == 'WeightsIntegrityError' and 'truncated' in case['message']
    assert str(paths['truncated'] / NAME_TAG / 'model.safetensors') in case['message']


def test_weights_of_another_architecture_are_refused(local_cases, published):
    results, paths = local_cases
    for case, path in ((results['wrong_arch_dir'], paths['wrong_arch'] / 'model.safetensors'),
                       (results['wrong_arch_file'], published['resnet32_weights'])):
        assert case['error'] == 'WeightsArchitectureError' and case['user_error']
        assert str(path) in case['message'] and 'resnet20' in case['message']
        assert 'another architecture' in case['message']


def test_model_without_weights_says_so(local_cases):
    case = local_cases[0]['unpublished']
    assert case['error'] == 'WeightsNotFoundError' and 'resnet56 has no published weights' in case['message']


def test_larger_file_of_another_architecture_is_not_called_truncated(local_cases):
    results, paths = local_cases
    case = results['larger_other_arch']
    assert case['error'] == 'WeightsIntegrityError' and 'truncated' not in case['message']
    assert str(paths['larger'] / NAME_TAG / 'model.safetensors') in case['message']
    assert 'the config.json beside it says resnet32' in case['message'] and 'other weights' in case['message']


def test_local_weights_without_a_record_are_named(local_cases):
    results, paths = local_cases
    found = str(paths['unrecorded'] / 'resnet32.c10' / 'model.safetensors')
    untagged, tagged = results['unrecorded_untagged'], results['unrecorded_tag']
    assert untagged['error'] == 'WeightsNotFoundError' and 'resnet32 has no published weights' in untagged['message']
    assert tagged['error'] == 'WeightsNotFoundError' and 'Invalid pretrained tag' not in tagged['message']
    assert "resnet32.c10: no weights are published under tag 'c10'; it has no published weights yet" in \
        tagged['message']
    for case in (untagged, tagged):
        assert f'Found {found}, but no record' in case['message'] and 'pretrained_cfg_overlay' in case['message']


def test_unknown_tag_lists_the_known_ones(local_cases):
    case = local_cases[0]['unknown_tag']
    assert case['error'] == 'WeightsNotFoundError' and case['user_error']
    assert "resnet20.c99: no weights are published under tag 'c99'; its tags are c10" in case['message']


def test_named_weights_file_that_is_missing_or_not_safetensors(local_cases):
    results, paths = local_cases
    case = results['random_bytes_file']
    assert case['error'] == 'WeightsIntegrityError' and case['user_error']
    assert f'{paths["random_bytes"]} is not a readable safetensors file' in case['message']
    case = results['missing_file']
    assert case['error'] == 'WeightsNotFoundError' and 'nowhere.safetensors does not exist' in case['message']


def test_nan_weights_are_refused(local_cases):
    results, paths = local_cases
    case = results['nan_file']
    assert case['error'] == 'NonFiniteWeightsError' and case['user_error']
    assert f'{paths["nan"]} holds NaN or inf in 1 tensor(s) (e.g. head.fc.bias)' in case['message']


# -------------------------------------------------------------------------------------------- loopback Hub

def test_hub_download_cache_and_hf_hub_names(published, hub_server, tmp_path):
    shutil.copytree(published['repo'], hub_server.root / HUB_ID)
    # a second repo whose served weights differ from the published sha256 (a corrupted or replaced Hub copy)
    corrupt = hub_server.root / 'cifar-timm' / 'resnet20.corrupt'
    shutil.copytree(published['repo'], corrupt)
    data = (corrupt / 'model.safetensors').read_bytes()
    (corrupt / 'model.safetensors').write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    tags = json.loads(published['tags_file'].read_text())
    tags['resnet20.corrupt'] = dict(tags[NAME_TAG], hf_hub_id='cifar-timm/resnet20.corrupt')
    tags['resnet20.gone'] = dict(tags[NAME_TAG], hf_hub_id='cifar-timm/resnet20.gone')  # no such repo on the Hub
    tags_file = tmp_path / 'tags.json'
    tags_file.write_text(json.dumps(tags))
    env = scenario_env(tmp_path, tags_file, hub_server.url)

    body = ("out['first'] = load('resnet20.c10')\n"
            "out['again'] = load('resnet20.c10')\n"
            "out['hf_hub'] = load('hf-hub:cifar-timm/resnet20.c10')\n"
            "out['corrupt'] = load('resnet20.corrupt')\n"
            "out['gone'] = load('resnet20.gone')\n")
    out = run_scenario(body, published['weights'], env)
    first, again, hf_hub, corrupt_case = out['first'], out['again'], out['hf_hub'], out['corrupt']
    assert first['same_logits'] and first['hf_hub_id'] == HUB_ID
    cached = Path(first['file'])
    assert cached.is_file() and cached.is_relative_to(tmp_path / 'hf_cache')
    assert again['same_logits'] and again['file'] == str(cached)
    assert hf_hub['same_logits'] and hf_hub['tag'] == 'c10'
    # one download; the second call and the hf-hub: name only asked whether the cached file is current
    assert hub_server.methods_for(f'/{HUB_ID}/resolve/main/model.safetensors') == ['HEAD', 'GET', 'HEAD', 'HEAD']
    assert corrupt_case['error'] == 'WeightsIntegrityError'
    assert 'resnet20.corrupt' in corrupt_case['message'] and 'removed from the cache' in corrupt_case['message']
    cache = tmp_path / 'hf_cache' / 'models--cifar-timm--resnet20.corrupt'
    assert 'GET' in hub_server.methods_for('/cifar-timm/resnet20.corrupt/resolve/main/model.safetensors')
    assert not [p for p in cache.rglob('*') if p.name == 'model.safetensors' or p.stat().st_size == len(data)]
    assert out['gone']['error'] == 'WeightsNotFoundError' and 'cifar-timm/resnet20.gone' in out['gone']['message']
    assert 'CIFAR_TIMM_WEIGHTS' in out['gone']['message']


# ---------------------------------------------------------------------------------------------------- publish

@pytest.fixture
def hub_client(hub_server, published, monkeypatch, tmp_path):
    """huggingface_hub in this process pointed at the loopback server, with a throwaway token."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'ENDPOINT', hub_server.url)
    monkeypatch.setattr(constants, 'HF_HUB_DISABLE_XET', True, raising=False)  # the loopback server speaks LFS
    monkeypatch.setenv('HF_TOKEN', 'hf_loopback_test_token')
    monkeypatch.setenv('CIFAR_TIMM_PRETRAINED_TAGS', str(published['tags_file']))
    return hub_server


@pytest.mark.filterwarnings('ignore::DeprecationWarning:httpx2')  # huggingface_hub's own LFS PUT
def test_publish_dry_run_upload_and_idempotence(hub_client, published, tmp_path, capsys):
    repo = tmp_path / NAME_TAG
    shutil.copytree(published['repo'], repo)
    assert cli.main(['publish', str(repo), '--org', 'cifar-timm', '--dry-run']) == 0
    out = capsys.readouterr().out
    assert 'new repo' in out and re.search(r'would add +model\.safetensors', out)
    assert not [m for m in hub_client.requests if m[0] in ('POST', 'PUT')]

    assert cli.main(['publish', str(repo), '--org', 'cifar-timm']) == 0
    assert hub_client.files(HUB_ID) == {p.name: p.read_bytes() for p in repo.iterdir()}
    assert 'published cifar-timm/resnet20.c10' in capsys.readouterr().out

    hub_client.requests.clear()
    assert cli.main(['publish', str(repo), '--org', 'cifar-timm']) == 0
    assert 'up to date' in capsys.readouterr().out
    assert not [m for m in hub_client.requests if m[0] in ('POST', 'PUT')]

    (repo / 'README.md').write_text((repo / 'README.md').read_text() + '\nMore notes.\n')
    assert cli.main(['publish', str(repo), '--org', 'cifar-timm', '--dry-run']) == 0
    out = capsys.readouterr().out
    assert re.search(r'would update +README\.md', out) and re.search(r'unchanged +model\.safetensors', out)


def test_publish_refuses_weights_that_differ_from_their_record(hub_client, published, tmp_path, capsys):
    repo = tmp_path / NAME_TAG
    shutil.copytree(published['repo'], repo)
    save_file({'x': torch.zeros(1)}, repo / 'model.safetensors')
    assert cli.main(['publish', str(repo), '--dry-run']) == 2
    err = capsys.readouterr().err
    assert 'differs from the resnet20.c10 weights recorded' in err and 'cifar-timm export' in err
    (repo / 'model.safetensors').unlink()
    shutil.copyfile(published['weights'], repo / 'model.safetensors')
    torch.save({}, repo / 'pytorch_model.bin')
    assert cli.main(['publish', str(repo), '--dry-run']) == 2
    assert 'pickle' in capsys.readouterr().err
    assert not hub_client.requests


@pytest.mark.filterwarnings('ignore::DeprecationWarning:httpx2')  # huggingface_hub's own LFS PUT
def test_publish_says_what_a_failed_upload_left_on_the_hub(hub_client, published, tmp_path, capsys):
    repo = tmp_path / NAME_TAG
    shutil.copytree(published['repo'], repo)
    hub_client.drop = ('/commit/',)  # the connection breaks when the files are committed
    assert cli.main(['publish', str(repo), '--org', 'cifar-timm']) == 2
    err = capsys.readouterr().err
    assert 'the upload of cifar-timm/resnet20.c10 failed' in err and 'Traceback' not in err
    assert ('cifar-timm/resnet20.c10 exists (created by this command) with 0 of the 4 files up to date; still to '
            'upload: ') in err and 'model.safetensors' in err and 'Run the command again' in err
    assert hub_client.files(HUB_ID) == {}
    hub_client.drop = ()
    assert cli.main(['publish', str(repo), '--org', 'cifar-timm']) == 0  # ...and again, it completes
    assert hub_client.files(HUB_ID) == {p.name: p.read_bytes() for p in repo.iterdir()}


# -------------------------------------------------------------------------------------------------- round trip

def test_round_trip_train_export_load(cifar_root, tmp_path):
    """A real 1-epoch run on 256 images -> export -> pretrained=True from hub/ and from the Hub: identical logits,
    and the loaded model reproduces the run's own top-1 on the exact test images."""
    run_dir = tmp_path / 'run'
    train = subprocess.run(
        [sys.executable, 'recipes/train.py', '--config', 'recipes/configs/resnet20.yaml', 'epochs=1',
         'data.limit=256', 'data.val_limit=256', 'data.test_limit=1017', f'data.dir={cifar_root}',
         'data.verify_md5=false', 'batch_size=64', 'log.progress=false', 'log.tensorboard=false', f'output={run_dir}'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    results = json.loads((run_dir / 'export' / 'results.json').read_text())

    hub_dir, tags_file = tmp_path / 'hub', tmp_path / 'tags.json'
    repo = export_run(run_dir, hub_dir=hub_dir, tags_file=tags_file)
    weights = run_dir / 'export' / 'model.safetensors'
    with LoopbackHub(tmp_path / 'hub_root') as hub:
        shutil.copytree(repo, hub.root / HUB_ID)
        body = f'''
from cifar_timm.data import load_cifar10
from cifar_timm.evaluation import evaluate
os.environ['CIFAR_TIMM_HUB_DIR'] = {str(hub_dir)!r}
out['hub_dir'] = load('resnet20.c10')
test = load_cifar10({str(cifar_root)!r}, 'test', verify_md5=False)
model = timm.create_model('resnet20.c10', pretrained=True).eval()
out['top1_exact'] = evaluate(model, test.images[:1017], test.labels[:1017])['top1']
os.environ['CIFAR_TIMM_HUB_DIR'] = {str(tmp_path / 'no_hub')!r}
out['hub'] = load('resnet20.c10')
'''
        out = run_scenario(body, weights, scenario_env(tmp_path, tags_file, hub.url))
        downloads = hub.methods_for(f'/{HUB_ID}/resolve/main/model.safetensors')
    assert out['hub_dir']['same_logits'] and out['hub_dir']['file'] == str(repo / 'model.safetensors')
    assert out['hub']['same_logits'] and 'hf_cache' in out['hub']['file'] and 'GET' in downloads
    assert out['top1_exact'] == pytest.approx(results['top1_exact'], abs=1e-6)


# ------------------------------------------------------------------------------------ offline (last: see offline_case)

def test_hub_down_without_local_copy(offline_case):
    results = offline_case()
    case = results['offline']
    assert case['error'] == 'WeightsNotFoundError' and case['user_error']
    assert 'cannot reach the Hugging Face Hub' in case['message'] and 'CIFAR_TIMM_WEIGHTS' in case['message']
    assert 'hub/resnet20.c10' in case['message']
    assert 'set HF_HUB_OFFLINE=1' in case['message']  # the way to skip huggingface_hub's ~25 s of retries
    assert not [p for p in results['cache'] if 'blobs' in p or p.endswith('.incomplete')]
