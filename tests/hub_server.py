"""A Hugging Face Hub stand-in on 127.0.0.1 for tests: real HTTP, repos read from and written to a folder.

`root/<org>/<repo>/<files>` is the `main` revision of model repo `<org>/<repo>`. The server answers what
huggingface_hub 2.4 sends for downloads (file_download.py) and uploads (hf_api.create_repo / upload_folder with the
LFS protocol, _commit_api.py, lfs.py):

  HEAD/GET /<org>/<repo>/resolve/<rev>/<path>      ETag, X-Repo-Commit, Content-Length (+ X-Linked-* for LFS files);
                                                   404 with X-Error-Code RepoNotFound / EntryNotFound
  GET  /api/models/<org>/<repo>[/revision/<rev>]   model info with siblings (blobId, size, lfs) for `?blobs=true`
  POST /api/repos/create                           200, or 409 (with the repo's url) when the repo exists
  POST /api/validate-yaml                          no warnings
  POST /api/models/<org>/<repo>/preupload/<rev>    upload mode per file (lfs for binary files) and its current oid
  POST /<org>/<repo>.git/info/lfs/objects/batch    basic transfer: PUT to /lfs-upload/<oid> unless already stored
  PUT  /lfs-upload/<oid>                           stores the object after checking its sha256
  POST /api/models/<org>/<repo>/commit/<rev>       applies an ndjson commit to the folder

Only `main` exists; any other revision is answered as the current one. Every request is logged in `requests`.
A request whose path contains one of `drop` is read and then answered by closing the connection: a network failure.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

LFS_SUFFIXES = ('.safetensors', '.png', '.bin', '.pt')


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


class LoopbackHub:
    """Serve `root` as a Hub on 127.0.0.1 (an ephemeral port) from a daemon thread; use as a context manager."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lfs_store = self.root / '.lfs-objects'
        self.requests: list[tuple[str, str]] = []
        self.drop: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    def __enter__(self) -> 'LoopbackHub':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def methods_for(self, fragment: str) -> list[str]:
        """HTTP methods of the logged requests whose path contains `fragment`."""
        return [m for m, p in self.requests if fragment in p]

    # ------------------------------------------------------------------------------------------- repo contents
    def repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def files(self, repo_id: str) -> dict[str, bytes]:
        folder = self.repo_dir(repo_id)
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}

    def commit_sha(self, repo_id: str) -> str:
        """A 40-hex commit id that changes whenever any file changes (like a git commit of the tree)."""
        digest = hashlib.sha1(repo_id.encode())
        for path, data in self.files(repo_id).items():
            digest.update(path.encode() + b'\0' + hashlib.sha256(data).digest())
        return digest.hexdigest()

    def sibling(self, path: str, data: bytes) -> dict:
        entry = {'rfilename': path, 'size': len(data), 'blobId': git_blob_sha1(data)}
        if is_lfs(path):
            entry['lfs'] = {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data), 'pointerSize': 134}
        return entry

    def oid(self, path: str, data: bytes) -> str:
        """What huggingface_hub compares to skip unchanged files: sha256 for LFS files, the git blob sha1 else."""
        return hashlib.sha256(data).hexdigest() if is_lfs(path) else git_blob_sha1(data)


def _handler_for(hub: LoopbackHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args):  # keep pytest output clean
            pass

        # ------------------------------------------------------------------------------------------ plumbing
        def _log(self):
            with hub._lock:
                hub.requests.append((self.command, urlsplit(self.path).path))

        def _body(self) -> bytes:
            length = int(self.headers.get('Content-Length') or 0)
            return self.rfile.read(length) if length else b''

        def _send(self, status: int, body: bytes = b'', headers: dict | None = None, head: bool = False):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, obj, headers: dict | None = None, head: bool = False):
            self._send(status, json.dumps(obj).encode(), dict({'Content-Type': 'application/json'}, **(headers or {})),
                       head=head)

        def _error(self, status: int, code: str, message: str, headers: dict | None = None, head: bool = False):
            self._json(status, {'error': message}, dict({'X-Error-Code': code, 'X-Error-Message': message},
                                                        **(headers or {})), head=head)

        def _dropped(self, path: str) -> bool:
            """Close the connection without an answer (the client sees the server disconnect) if `drop` says so."""
            if any(fragment in path for fragment in hub.drop):
                self.close_connection = True
                return True
            return False

        # ------------------------------------------------------------------------------------------- routes
        def do_HEAD(self):
            self._log()
            self._resolve(head=True)

        def do_GET(self):
            self._log()
            path = urlsplit(self.path).path
            m = re.fullmatch(r'/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?', path)
            if m:
                return self._model_info(m.group(1))
            self._resolve(head=False)

        def do_POST(self):
            self._log()
            path, body = urlsplit(self.path).path, self._body()
            if self._dropped(path):
                return
            if path == '/api/repos/create':
                payload = json.loads(body)
                repo_id = f'{payload["organization"]}/{payload["name"]}'
                if hub.repo_dir(repo_id).is_dir():  # the Hub's 409 carries the repo's url, which create_repo reads
                    message = 'You already created this model repo'
                    return self._json(409, {'error': message, 'url': f'{hub.url}/{repo_id}'},
                                      {'X-Error-Code': 'RepoExists', 'X-Error-Message': message})
                hub.repo_dir(repo_id).mkdir(parents=True)
                return self._json(200, {'url': f'{hub.url}/{repo_id}', 'name': repo_id})
            if path == '/api/validate-yaml':
                return self._json(200, {'warnings': []})
            m = re.fullmatch(r'/api/models/([^/]+/[^/]+)/preupload/[^/]+', path)
            if m:
                return self._preupload(m.group(1), json.loads(body))
            m = re.fullmatch(r'/([^/]+/[^/]+)\.git/info/lfs/objects/batch', path)
            if m:
                return self._lfs_batch(json.loads(body))
            m = re.fullmatch(r'/api/models/([^/]+/[^/]+)/commit/[^/]+', path)
            if m:
                return self._commit(m.group(1), body)
            self._error(404, 'NotFound', f'no route {path}')

        def do_PUT(self):
            self._log()
            path, body = urlsplit(self.path).path, self._body()
            if self._dropped(path):
                return
            m = re.fullmatch(r'/lfs-upload/([0-9a-f]{64})', path)
            if not m or hashlib.sha256(body).hexdigest() != m.group(1):
                return self._error(400, 'BadRequest', 'LFS object does not match its oid')
            hub.lfs_store.mkdir(parents=True, exist_ok=True)
            (hub.lfs_store / m.group(1)).write_bytes(body)
            self._send(200)

        # ------------------------------------------------------------------------------------------ download
        def _resolve(self, head: bool):
            m = re.fullmatch(r'/([^/]+/[^/]+)/resolve/([^/]+)/(.+)', urlsplit(self.path).path)
            if not m:
                return self._error(404, 'NotFound', 'not a resolve URL', head=head)
            repo_id, _revision, filename = m.groups()
            if not hub.repo_dir(repo_id).is_dir():
                return self._error(404, 'RepoNotFound', f'Repository not found: {repo_id}', head=head)
            commit = hub.commit_sha(repo_id)
            target = hub.repo_dir(repo_id) / filename
            if not target.is_file():
                return self._error(404, 'EntryNotFound', f'Entry not found: {filename}',
                                   {'X-Repo-Commit': commit}, head=head)
            data = target.read_bytes()
            etag = f'"{hub.oid(filename, data)}"'
            headers = {'ETag': etag, 'X-Repo-Commit': commit, 'Content-Type': 'application/octet-stream'}
            if is_lfs(filename):
                headers.update({'X-Linked-Etag': etag, 'X-Linked-Size': str(len(data))})
            self._send(200, data, headers, head=head)

        def _model_info(self, repo_id: str):
            if not hub.repo_dir(repo_id).is_dir():
                return self._error(404, 'RepoNotFound', f'Repository not found: {repo_id}')
            siblings = [hub.sibling(p, d) for p, d in hub.files(repo_id).items()]
            self._json(200, {'id': repo_id, 'sha': hub.commit_sha(repo_id), 'private': False, 'siblings': siblings})

        # -------------------------------------------------------------------------------------------- upload
        def _preupload(self, repo_id: str, payload: dict):
            current = hub.files(repo_id) if hub.repo_dir(repo_id).is_dir() else {}
            files = []
            for f in payload['files']:
                path = f['path']
                old = current.get(path)
                files.append({'path': path, 'uploadMode': 'lfs' if is_lfs(path) else 'regular', 'shouldIgnore': False,
                              'oid': hub.oid(path, old) if old is not None else None})
            self._json(200, {'files': files, 'commitOid': hub.commit_sha(repo_id) if current else None})

        def _lfs_batch(self, payload: dict):
            objects = []
            for obj in payload['objects']:
                entry = {'oid': obj['oid'], 'size': obj['size']}
                if not (hub.lfs_store / obj['oid']).is_file():
                    entry['actions'] = {'upload': {'href': f'{hub.url}/lfs-upload/{obj["oid"]}'}}
                objects.append(entry)
            self._json(200, {'transfer': 'basic', 'objects': objects})

        def _commit(self, repo_id: str, body: bytes):
            folder = hub.repo_dir(repo_id)
            if not folder.is_dir():
                return self._error(404, 'RepoNotFound', f'Repository not found: {repo_id}')
            for line in body.decode().splitlines():
                item = json.loads(line)
                value = item.get('value', {})
                if item['key'] == 'file':
                    _write(folder / value['path'], base64.b64decode(value['content']))
                elif item['key'] == 'lfsFile':
                    _write(folder / value['path'], (hub.lfs_store / value['oid']).read_bytes())
                elif item['key'] == 'deletedFile':
                    (folder / value['path']).unlink(missing_ok=True)
                elif item['key'] == 'deletedFolder':
                    shutil.rmtree(folder / value['path'], ignore_errors=True)
            commit = hub.commit_sha(repo_id)
            self._json(200, {'commitOid': commit, 'commitUrl': f'{hub.url}/{repo_id}/commit/{commit}',
                             'pullRequestUrl': None})

    return Handler


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
