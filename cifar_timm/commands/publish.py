"""`cifar-timm publish hub/<model>.<tag> --org cifar-timm [--dry-run]`: upload an exported repo folder to the Hub.

Uses huggingface_hub (`create_repo(exist_ok=True)`, `upload_folder`) with the token in `HF_TOKEN` (or a saved
`hf auth login`); `HF_ENDPOINT` picks another Hub. The local files are compared with the remote ones first (sha256
for LFS files, git blob sha1 for the rest), so publishing an unchanged folder uploads nothing and makes no commit.
`--dry-run` prints that comparison and stops. Before anything is sent, the folder's weights must match their
record in pretrained_tags.json: published weights that fail the sha256 check would be useless to every user.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import CifarTimmError
from ..hub import DEFAULT_ORG, WEIGHTS_FILENAME, load_pretrained_tags, sha256_file

HELP = 'Upload an exported repo folder (hub/<model>.<tag>/) to the Hugging Face Hub; --dry-run lists what would change.'

REQUIRED_FILES = ('config.json', WEIGHTS_FILENAME, 'README.md')
PICKLE_SUFFIXES = ('.bin', '.pt', '.pth', '.pkl', '.ckpt')  # the Hub repos hold safetensors only


class PublishError(CifarTimmError):
    """A folder that should not be published as it is, or a Hub that refused it."""


@dataclass
class UploadPlan:
    """How the local folder differs from the remote repo (`remote_reachable` False: the remote is unknown)."""
    repo_id: str
    add: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    remote_only: list[str] = field(default_factory=list)
    repo_exists: bool = False
    remote_reachable: bool = True
    remote_error: str = ''

    @property
    def changes(self) -> bool:
        return bool(self.add or self.update) or not self.repo_exists


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('folder', type=Path, help='an exported repo folder, e.g. hub/resnet20.c10')
    parser.add_argument('--org', default=DEFAULT_ORG, help=f'Hub organisation or user (default {DEFAULT_ORG})')
    parser.add_argument('--dry-run', action='store_true', help='list what would be uploaded, change nothing')
    parser.add_argument('--message', default=None, help='commit message (default: "Upload <model>.<tag>")')


def run(args: argparse.Namespace) -> int:
    publish(args.folder, org=args.org, dry_run=args.dry_run, message=args.message)
    return 0


def publish(folder: Path, org: str = DEFAULT_ORG, dry_run: bool = False, message: Optional[str] = None,
            token: Optional[str] = None) -> UploadPlan:
    """Check the folder, compare it with the Hub and (unless `dry_run`) upload what changed."""
    from huggingface_hub import HfApi, constants

    folder = Path(folder)
    weights_sha256 = check_folder(folder)
    repo_id = f'{org}/{folder.name}'
    api = HfApi(token=token)
    plan = plan_upload(api, folder, repo_id, {WEIGHTS_FILENAME: weights_sha256} if weights_sha256 else None)
    print(describe(plan, constants.ENDPOINT, dry_run))
    if dry_run or not plan.changes:
        return plan
    if not plan.remote_reachable:
        raise PublishError(f'cannot read {repo_id} from the Hub at {constants.ENDPOINT} ({plan.remote_error}); check '
                           f'the network, HF_ENDPOINT and HF_TOKEN, then run the command again.')
    try:
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=repo_id,
                                   commit_message=message or f'Upload {folder.name}', ignore_patterns=['.*', '**/.*'])
    except Exception as e:  # noqa: BLE001  HTTP refusals and the HTTP client's connection errors alike
        raise PublishError(_upload_failure(api, folder, plan, e, org)) from e
    print(f'published {repo_id}: {commit.commit_url}')
    return plan


def _upload_failure(api, folder: Path, before: UploadPlan, error: Exception, org: str) -> str:
    """Why the upload failed and, read back from the Hub, what state it left the remote repo in."""
    from huggingface_hub.errors import HfHubHTTPError

    response = getattr(error, 'response', None) if isinstance(error, HfHubHTTPError) else None
    status = getattr(response, 'status_code', None)
    repo_id = before.repo_id
    what = f'the Hub refused the upload of {repo_id}' if response is not None else f'the upload of {repo_id} failed'
    hint = (f'set HF_TOKEN to a token with write access to {org}' if status in (401, 403)
            else 'check the network, HF_ENDPOINT and HF_TOKEN')
    after = plan_upload(api, folder, repo_id)
    if not after.remote_reachable:
        state = f'what {repo_id} holds now could not be read back ({after.remote_error})'
    elif not after.repo_exists:
        state = f'{repo_id} does not exist'
    elif not after.changes:
        state = f'{repo_id} holds every file nonetheless (the commit landed before the error)'
    else:
        created = '' if before.repo_exists else ' (created by this command)'
        pending = after.add + after.update
        state = (f'{repo_id} exists{created} with {len(after.unchanged)} of the {len(after.unchanged) + len(pending)} '
                 f'files up to date; still to upload: {", ".join(pending)}')
    return (f'{what} ({type(error).__name__}: {" ".join(str(error).split())[:300]}). On the Hub, {state}. '
            f'Run the command again to finish ({hint}); a Hub commit is all or nothing, so no file is half-written.')


def check_folder(folder: Path) -> Optional[str]:
    """A publishable folder: made by `cifar-timm export`, no pickles, weights matching their record.

    Returns the weights' sha256 when checking computed it (their record has one), so the upload plan need not hash
    them again.
    """
    if not folder.is_dir():
        raise PublishError(f'{folder} is not a folder; publish an exported repo such as hub/resnet20.c10 '
                           f'(make one with `cifar-timm export RUN_DIR`).')
    missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
    if missing:
        raise PublishError(f'{folder} lacks {", ".join(missing)}; re-create it with `cifar-timm export RUN_DIR`.')
    _refuse_converted(folder)
    pickles = [p.name for p in folder.rglob('*') if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise PublishError(f'{folder} holds pickle files ({", ".join(pickles)}); the repos carry safetensors only: '
                           f'delete them.')
    record = load_pretrained_tags().get(folder.name)
    if not (record and record.get('sha256')):
        return None
    weights_sha256 = sha256_file(folder / WEIGHTS_FILENAME)
    if weights_sha256 != record['sha256']:
        raise PublishError(f'{folder / WEIGHTS_FILENAME} differs from the {folder.name} weights recorded in '
                           f'pretrained_tags.json, so users\' sha256 check would reject it. Re-run '
                           f'`cifar-timm export RUN_DIR --tag {folder.name.split(".", 1)[-1]}` to make them agree.')
    return weights_sha256


def _refuse_converted(folder: Path) -> None:
    """`cifar-timm convert` output holds a peer's weights under the peer's licence (fattorib's has none), not
    weights this project trained: the zoo's repos are its own runs only."""
    from ..convert.sources import SOURCES

    try:
        cfg = json.loads((folder / 'config.json').read_text()).get('pretrained_cfg') or {}
    except (OSError, ValueError, AttributeError) as e:
        raise PublishError(f'{folder / "config.json"} is not a readable timm config ({e}); re-create the folder with '
                           f'`cifar-timm export RUN_DIR`.') from e
    source = SOURCES.get(cfg.get('tag')) if isinstance(cfg, dict) else None
    if source is not None and not (folder / 'results.json').is_file():  # an export writes its training record
        raise PublishError(
            f'{folder} holds the weights of {source.repo}, converted by `cifar-timm convert --from {source.name}`, '
            f'not weights cifar-timm trained: the zoo publishes only its own runs (licence of these: '
            f'{source.license or "none given, so they may not be redistributed"}). Publish a folder made by '
            f'`cifar-timm export RUN_DIR`; use converted folders locally with '
            f"timm.create_model('local-dir:{folder}', pretrained=True).")


def plan_upload(api, folder: Path, repo_id: str, known_sha256: Optional[dict[str, str]] = None) -> UploadPlan:
    """Compare the folder with the repo's `main` on the Hub (sha256 for LFS files, git blob sha1 for the rest).

    `known_sha256` maps folder-relative paths to digests already computed, which are not computed again.
    """
    from huggingface_hub.errors import RepositoryNotFoundError

    known_sha256 = known_sha256 or {}
    local = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob('*'))
             if p.is_file() and not any(part.startswith('.') for part in p.relative_to(folder).parts)}
    plan = UploadPlan(repo_id=repo_id)
    remote = {}
    try:
        info = api.model_info(repo_id, files_metadata=True)
        remote = {s.rfilename: s for s in info.siblings or []}
        plan.repo_exists = True
    except RepositoryNotFoundError:
        pass
    except Exception as e:  # noqa: BLE001  the HTTP client's connection errors vary by huggingface_hub version
        plan.remote_reachable, plan.remote_error = False, f'{type(e).__name__}: {e}'
    for path, file in local.items():
        sibling = remote.get(path)
        if sibling is None:
            plan.add.append(path)
        elif _same_content(file, sibling, known_sha256.get(path)):
            plan.unchanged.append(path)
        else:
            plan.update.append(path)
    plan.remote_only = sorted(set(remote) - set(local))
    return plan


def _same_content(file: Path, sibling, sha256: Optional[str] = None) -> bool:
    if sibling.lfs is not None:  # large files: hashed block by block, never read whole
        return (sha256 or sha256_file(file)) == sibling.lfs.sha256
    data = file.read_bytes()  # a small text file (config, card): git's blob id covers the whole content
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest() == sibling.blob_id


def describe(plan: UploadPlan, endpoint: str, dry_run: bool) -> str:
    verb = 'would' if dry_run else 'will'
    if not plan.remote_reachable:
        head = f'{plan.repo_id}: cannot read it from {endpoint} ({plan.remote_error}); every file is listed as new'
    elif not plan.repo_exists:
        head = f'{plan.repo_id}: new repo on {endpoint}'
    else:
        head = f'{plan.repo_id} on {endpoint}'
    lines = [head]
    record = load_pretrained_tags().get(plan.repo_id.split('/', 1)[-1]) or {}
    if record.get('hf_hub_id') and record['hf_hub_id'] != plan.repo_id:
        lines.append(f'  note: pretrained_tags.json points this tag at {record["hf_hub_id"]}; '
                     f'`pretrained=True` downloads from there, not from {plan.repo_id}')
    rows = ([(f'{verb} add', p) for p in plan.add] + [(f'{verb} update', p) for p in plan.update]
            + [('unchanged', p) for p in plan.unchanged] + [('remote only', f'{p} (kept)') for p in plan.remote_only])
    lines += [f'  {label:<13} {path}' for label, path in rows]
    if plan.repo_exists and not (plan.add or plan.update):
        lines.append('  up to date: nothing to upload')
    return '\n'.join(lines)
