"""Train many recipes at once on one machine, poll them, and ship the results back in size-capped files.

Made for the lent GPU sessions (/work/.library/device): each call there is at most 10 minutes, only $OUT comes back
(at most 8 files of 16 MiB, 64 MiB together) and small CIFAR models leave an H100 mostly idle, so several
`recipes/train.py` processes share the GPU. Subcommands:

  start   [--queue FILE] [MODEL | NAME=RECIPE]... --runs-dir runs --data-dir D [-j N] [--set k=v ...]
          [--set-for NAME k=v ...] [--stop-after MIN]
          checks every config, then detaches a supervisor (its own process session: the calling shell may return)
          that runs `train.py --config recipes/configs/RECIPE.yaml output=RUNS/NAME resume=auto ...` for each,
          at most N at a time (default 1 on a CPU-only machine, where two trainings only slow each other, 4 with a
          GPU), in the order given; each run logs to RUNS/NAME/train.log. A queue file (recipes/queues/*.yaml)
          lists runs and shared overrides: the CPU weights campaign restarts from it every session, finished runs
          and those already published in hub/ skipped (--retrain NAME trains one again), stopped ones resumed.
          --stop-after stops them all (with checkpoints) after MIN minutes.
  export  `cifar-timm export` of every finished run named <model>.<tag> into hub/ (commit hub/ and the record).
  status  one line per run: state, epoch reached, last validation top-1, epoch time, ETA (--json: all numbers;
          --follow S: repeat every S seconds while runs are left, up to --max-wait: the polling call).
  stop    SIGTERM to every training (each saves a checkpoint and exits 143; `start` again resumes) and the
          supervisor; SIGKILL after --timeout.
  pack    OUT: the run folders as at most --max-files files in OUT: a manifest, every run's small files (logs,
          metrics, configs, results) as one tar.gz, then finished runs' export weights, then unfinished runs'
          latest checkpoints, smallest first, split into parts of at most --max-file-mib. What does not fit is
          listed as left out; a ledger in RUNS remembers what was shipped, so the next `pack` ships the rest.
  unpack  DIR... : joins the parts from one or more fetched OUT folders back into RUNS (sha256-checked).

The runs folder is self-describing (config.yaml, metrics.csv, export/), so `status` also works on a folder that was
unpacked elsewhere. Epoch times are measured under the concurrency the launcher ran with (`concurrency` in status).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # a device machine has the checkout but not the installed package
    sys.path.append(str(REPO))
CONFIGS = REPO / 'recipes' / 'configs'
TRAIN_PY = REPO / 'recipes' / 'train.py'

# The CPU campaign keeps its runs outside the checkout, where a machine handed to the next session keeps them
# (a new session lays the work tree anew): e.g. CIFAR_TIMM_RUNS_DIR=~/.cache/cifar-timm/runs.
RUNS_DIR_ENV = 'CIFAR_TIMM_RUNS_DIR'
STATE_FILE = 'launcher.json'        # in the runs folder: the supervisor's view of every run
SUPERVISOR_LOG = 'launcher.log'
LEDGER_FILE = '.pack-ledger.json'   # what `pack` has already written out, so the next call ships the rest
RUN_LOG = 'train.log'
# Importing anything of cifar_timm loads torch and timm (seconds on a busy machine), so the supervisor stays free of
# it: it starts the runs that --stop-after times. Hence its own two helpers below; the other commands import
# cifar_timm's helpers where they need them.
SIGTERM_EXIT = 128 + signal.SIGTERM  # train.py's exit code after saving a checkpoint (loop.SIGTERM_EXIT_CODE)
# Overrides every launched run gets first; --set wins over them. None: the configs' `auto` precision and memory format
# already pick bf16 + channels_last on GPUs and bf16-capable CPUs, and fp32 where bf16 is only emulated (an AVX2-only
# CPU trains resnet20 in forced bf16 several times slower than in fp32).
DEFAULT_SETS: tuple[str, ...] = ()
# Set by the launcher itself (the launcher relies on them), after --set.
FIXED_SETS = ('resume=auto', 'log.progress=false')
UNFINISHED_STATES = ('queued', 'running', 'stopped', 'unfinished', 'lost')  # what `start` trains on
MIB = 2 ** 20
MANIFEST_RESERVE = MIB // 4          # bytes kept free in a volume for the manifest itself
LOG_TAIL_BYTES = 2 * MIB             # a longer train.log is shipped as its last 2 MiB


class LaunchError(Exception):
    """Bad input to the launcher; printed without a traceback, naming the fix."""


# ----------------------------------------------------------------------------------------------------- helpers

def utc_now() -> str:
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def write_json_atomic(path: Path, data: Any) -> None:
    """As cifar_timm.hub.write_text_atomic (not imported: see SIGTERM_EXIT)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    tmp.write_text(json.dumps(data, indent=2) + '\n')
    os.replace(tmp, path)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def pid_alive(pid: Optional[int]) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
        return stat.rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


def machine_id() -> str:
    """This boot of this machine: a state file unpacked on another machine (or after a reboot) is not ours."""
    try:
        return Path('/proc/sys/kernel/random/boot_id').read_text().strip()
    except OSError:
        import socket
        return socket.gethostname()


def is_local(state: dict[str, Any], runs: Path) -> bool:
    return state.get('runs_dir') == str(runs.resolve()) and state.get('machine') == machine_id()


def launcher_alive(state: dict[str, Any], runs: Path) -> bool:
    """Whether the supervisor recorded in `state` still runs here (not a state file unpacked from elsewhere)."""
    return is_local(state, runs) and not state.get('supervisor_done') and pid_alive(state.get('supervisor_pid'))


def config_path(model: str) -> Path:
    path = Path(model) if model.endswith(('.yaml', '.yml')) else CONFIGS / f'{model}.yaml'
    if not path.is_file():
        known = ', '.join(sorted(p.stem for p in CONFIGS.glob('[!_]*.yaml')))
        raise LaunchError(f'no recipe for {model!r} ({path} does not exist); use one of: {known}')
    return path


# ------------------------------------------------------------------------------------------------- start/supervise

def start(args: argparse.Namespace) -> int:
    runs = Path(args.runs_dir)
    state_path = runs / STATE_FILE
    old = read_json(state_path, {})
    if launcher_alive(old, runs):
        raise LaunchError(f'a launcher is already running in {runs} (pid {old["supervisor_pid"]}); poll it with '
                          f'`status`, or `stop` it first (runs resume where they stopped)')
    if args.concurrency is None:
        import torch
        args.concurrency = 4 if torch.cuda.is_available() else 1
    if args.concurrency < 1:
        raise LaunchError(f'--concurrency must be at least 1, got {args.concurrency}')
    if args.queue:
        queued, queue_sets = read_queue(args.queue)
        args.models, args.set = [*queued, *args.models], [*queue_sets, *args.set]
    if not args.models:
        raise LaunchError('nothing to start: name runs (MODEL or NAME=RECIPE) or pass --queue FILE')
    data_dir = Path(args.data_dir).resolve()
    if not (data_dir / 'cifar-10-batches-py').is_dir():
        raise LaunchError(f'--data-dir {data_dir} holds no cifar-10-batches-py/; build it first with '
                          f'`python ../shared/cifar10/build.py {args.data_dir}` (on a device: from the carried copy)')
    names = [split_run_spec(spec)[0] for spec in args.models]
    if len(set(names)) != len(names):
        raise LaunchError('a run is named twice; each run needs its own output folder (name a second run of the '
                          'same recipe NAME=RECIPE, e.g. resnet20.seed1=resnet20)')
    sets = [*DEFAULT_SETS, f'data.dir={data_dir}', *args.set]
    per_run: dict[str, list[str]] = {}
    for name, item in args.set_for:
        if name not in names:
            raise LaunchError(f'--set-for {name} {item}: {name} is not among the runs to start ({", ".join(names)})')
        per_run.setdefault(name, []).append(item)
    for name in args.retrain:
        if name not in names:
            raise LaunchError(f'--retrain {name}: {name} is not among the runs to start ({", ".join(names)})')
    hub = published_hub_dir(args.hub_dir)
    entries = [_plan_run(spec, runs, sets + per_run.get(name, []), hub=None if name in args.retrain else hub)
               for spec, name in zip(args.models, names)]
    runs.mkdir(parents=True, exist_ok=True)
    stop_at = time.time() + 60 * args.stop_after if args.stop_after else None
    state = {'runs_dir': str(runs.resolve()), 'machine': machine_id(), 'concurrency': args.concurrency,
             'created': utc_now(), 'stop_at': stop_at, 'supervisor_pid': None, 'supervisor_done': False,
             'stopping': False, 'runs': entries}
    write_json_atomic(state_path, state)
    with open(runs / SUPERVISOR_LOG, 'ab') as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '_supervise', str(state_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)  # its own session: outlives the shell (and device call)
    while read_json(state_path)['supervisor_pid'] != proc.pid:  # the supervisor owns the state file from now on
        if proc.poll() is not None:
            raise LaunchError(f'the supervisor exited at once (code {proc.returncode}); see {runs / SUPERVISOR_LOG}')
        time.sleep(0.1)
    queued = [e['name'] for e in entries if e['state'] == 'queued']
    published = [e['name'] for e in entries if e['state'] == 'published']
    if published:
        print(f'skipping {len(published)} runs already published in {hub}: {", ".join(published)} '
              f'(--retrain NAME trains one again)')
    print(f'launcher pid {proc.pid}: {len(queued)} runs queued, {args.concurrency} at a time, in {runs} '
          f'(poll: python recipes/launch_many.py status --runs-dir {args.runs_dir})')
    return 0


def split_run_spec(spec: str) -> tuple[str, str]:
    """`NAME=RECIPE` names the run folder (e.g. `resnet20.short_c10=resnet20_short`); a bare RECIPE names it after
    the recipe file."""
    name, sep, recipe = spec.partition('=')
    if not sep:
        return config_path(spec).stem, spec
    if not name or not recipe or '/' in name or name.startswith('.'):
        raise LaunchError(f'bad run {spec!r}: write NAME=RECIPE, NAME a plain folder name (e.g. '
                          f'resnet20.he_c10=resnet20)')
    return name, recipe


def read_queue(path: Path) -> tuple[list[str], list[str]]:
    """A queue file (recipes/queues/*.yaml): `runs` of {run: NAME, recipe: RECIPE} in training order and `sets`
    for all of them; returns (run specs NAME=RECIPE, sets)."""
    import yaml
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise LaunchError(f'cannot read the queue {path}: {e}') from e
    runs, sets = data.get('runs'), data.get('sets') or []
    if not isinstance(runs, list) or not runs or not isinstance(sets, list):
        raise LaunchError(f'{path}: a queue needs `runs:` (a list of {{run: NAME, recipe: RECIPE}}) and optionally '
                          f'`sets:` (a list of KEY=VALUE)')
    specs = []
    for i, entry in enumerate(runs):
        if not isinstance(entry, dict) or set(entry) != {'run', 'recipe'}:
            raise LaunchError(f'{path}: runs[{i}] is {entry!r}; write {{run: NAME, recipe: RECIPE}}')
        specs.append(f'{entry["run"]}={entry["recipe"]}')
    return specs, [str(item) for item in sets]


def published_hub_dir(hub_dir: Optional[str]) -> Path:
    from cifar_timm.hub import default_hub_dir
    return Path(hub_dir) if hub_dir else default_hub_dir()


def _plan_run(spec: str, runs: Path, sets: list[str], hub: Optional[Path] = None) -> dict[str, Any]:
    """Check the config with the overrides now (a typo fails here, not in N background processes). A run whose
    weights are already in `hub` (as <model>.<tag>/) is 'published' and not trained again: a new machine that lost
    the runs folder must not retrain the whole campaign."""
    import cifar_timm  # noqa: F401  (registers the models)
    from cifar_timm.training.config import load_config
    name, recipe = split_run_spec(spec)
    path = config_path(recipe)
    output = runs / name
    config = load_config(path, [*sets, f'output={output}', *FIXED_SETS])
    finished = (output / 'export' / 'results.json').is_file()
    published = not finished and hub is not None and '.' in name and (hub / name / 'model.safetensors').is_file()
    cmd = [sys.executable, str(TRAIN_PY), '--config', str(path.resolve()), *sets, f'output={output.resolve()}',
           *FIXED_SETS]
    state = 'finished' if finished else 'published' if published else 'queued'
    published_exact = (read_json(hub / name / 'results.json') or {}).get('top1_exact') if published else None
    return {'name': name, 'model': config['model'], 'epochs': config['epochs'],
            'teacher': config['distill']['teacher'], 'cmd': cmd, 'state': state,
            'pid': None, 'returncode': None, 'started': None, 'ended': None, 'published_top1_exact': published_exact}


def supervise(state_path: Path) -> int:
    """The detached loop: start queued runs up to the limit, reap them, honour SIGTERM (forwarded to the runs)."""
    stop = {'asked': False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(asked=True))
    state = read_json(state_path)
    state['supervisor_pid'] = os.getpid()
    write_json_atomic(state_path, state)
    procs: dict[str, subprocess.Popen] = {}
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    # Several processes share the CPU cores; one thread pool each of all cores would oversubscribe them.
    env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // state['concurrency'])))
    print(f'{utc_now()} supervisor {os.getpid()} up: {len(state["runs"])} runs', flush=True)
    while True:
        changed = False
        if state.get('stop_at') and time.time() >= state['stop_at']:
            stop['asked'] = True  # --stop-after: checkpoints are on disk before the lease runs out
        for run in state['runs']:
            proc = procs.get(run['name'])
            if proc is None or proc.poll() is None:
                continue
            del procs[run['name']]
            run['returncode'], run['ended'] = proc.returncode, utc_now()
            output = Path(state['runs_dir']) / run['name']
            if proc.returncode == 0 and (output / 'export' / 'results.json').is_file():
                run['state'] = 'finished'
            elif proc.returncode == SIGTERM_EXIT or (state['stopping'] and proc.returncode == -signal.SIGTERM):
                run['state'] = 'stopped'  # a run killed before it could catch the signal resumes as well
            else:
                run['state'] = 'failed'
            print(f'{utc_now()} {run["name"]} {run["state"]} (exit {proc.returncode})', flush=True)
            changed = True
        if stop['asked'] and not state['stopping']:
            state['stopping'] = changed = True
            for name, proc in procs.items():
                proc.send_signal(signal.SIGTERM)  # train.py checkpoints at its next check and exits 143
            print(f'{utc_now()} SIGTERM: stopping {len(procs)} runs, starting no more', flush=True)
        if not state['stopping']:
            for run in state['runs']:
                if len(procs) >= state['concurrency']:
                    break
                if run['state'] == 'queued':
                    procs[run['name']] = _launch(run, Path(state['runs_dir']), env)
                    changed = True
        if changed:
            write_json_atomic(state_path, state)
        if not procs and (state['stopping'] or not any(r['state'] == 'queued' for r in state['runs'])):
            break
        time.sleep(1.0)
    state['supervisor_done'] = True
    write_json_atomic(state_path, state)
    print(f'{utc_now()} supervisor done', flush=True)
    return 0


def _launch(run: dict[str, Any], runs: Path, env: dict[str, str]) -> subprocess.Popen:
    output = runs / run['name']
    output.mkdir(parents=True, exist_ok=True)
    with open(output / RUN_LOG, 'ab') as log:
        log.write(f'==== {utc_now()} launch_many: {" ".join(run["cmd"])}\n'.encode())
        log.flush()
        proc = subprocess.Popen(run['cmd'], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO, env=env)
    run.update(state='running', pid=proc.pid, started=utc_now(), returncode=None, ended=None)
    print(f'{utc_now()} {run["name"]} started (pid {proc.pid})', flush=True)
    return proc


def stop(args: argparse.Namespace) -> int:
    runs = Path(args.runs_dir)
    state = read_json(runs / STATE_FILE)
    if state is None or not is_local(state, runs):
        raise LaunchError(f'no launcher of this machine in {runs}; nothing was started there with `start`')
    supervisor = state.get('supervisor_pid')
    children = [r['pid'] for r in state['runs'] if r['state'] == 'running']
    if pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
    else:  # the supervisor died: signal the runs it left behind directly
        for pid in filter(pid_alive, children):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(map(pid_alive, [supervisor, *children])):
        time.sleep(0.5)
    for pid in filter(pid_alive, [*children, supervisor]):
        print(f'pid {pid} still running after {args.timeout:.0f} s: SIGKILL (it resumes from its last checkpoint)')
        os.kill(pid, signal.SIGKILL)
    print_status(collect_status(runs))
    return 0


# ------------------------------------------------------------------------------------------------------- status

def collect_status(runs: Path) -> list[dict[str, Any]]:
    """One record per run folder (or launcher entry): progress, timing, and results once finished."""
    from cifar_timm.training.run_log import as_float, median_epoch_time, read_metrics
    state = read_json(runs / STATE_FILE, {})
    supervisor_alive = launcher_alive(state, runs)
    here = is_local(state, runs)  # else a copy from elsewhere: states come from the files alone
    entries = {r['name']: r for r in state.get('runs', [])}
    names = list(entries) + sorted(p.parent.name for p in runs.glob('*/config.yaml')
                                   if p.parent.name not in entries)
    out = []
    for name in names:
        entry, folder = entries.get(name, {}), runs / name
        rows = read_metrics(folder / 'metrics.csv')
        times = [float(r['epoch_time_s']) for r in rows if r.get('epoch_time_s')]
        # a folder the launcher did not start (unpacked, or an older queue): its config.yaml, read once
        config = {} if entry.get('epochs') and entry.get('model') else _run_config(folder)
        epochs = entry.get('epochs') or config.get('epochs')
        results = read_json(folder / 'export' / 'results.json')
        state_name = entry.get('state') if here else None
        state_name = 'finished' if results else (state_name or 'unfinished')
        if state_name == 'running' and not supervisor_alive and not pid_alive(entry.get('pid')):
            state_name = 'lost'  # the supervisor died and so did the run: `start` again resumes it
        done = int(rows[-1]['epoch']) + 1 if rows else 0
        median = median_epoch_time(times)
        record = {
            'name': name, 'model': entry.get('model') or config.get('model'), 'state': state_name,
            'teacher': entry['teacher'] if 'teacher' in entry else (config.get('distill') or {}).get('teacher'),
            'epochs_done': done, 'epochs': epochs,
            'val_top1': as_float(rows[-1].get('val_top1')) if rows else None,
            'epoch_time_s': round(median, 3) if median is not None else None,
            'first_epoch_time_s': times[0] if times else None,
            'images_per_s': _median([as_float(r.get('images_per_s')) for r in rows[1:] or rows]),
            'train_time_s': round(sum(times), 1),
            'eta_s': round(median * (epochs - done), 1) if median is not None and epochs else None,
            'eta_estimated': False,
            'concurrency': state.get('concurrency'), 'returncode': entry.get('returncode'),
            'latest_checkpoint': _latest_checkpoint_name(folder),
        }
        if results:
            record.update({k: results.get(k) for k in ('top1_exact', 'top1_exact_ci95', 'top1_test', 'hardware')})
        elif state_name == 'published':
            record['top1_exact'] = entry.get('published_top1_exact')
        out.append(record)
    _estimate_etas_from_the_same_model(out)
    return out


def _estimate_etas_from_the_same_model(records: list[dict[str, Any]]) -> None:
    """A run with no epoch timed yet gets an ETA from the median epoch of the other runs of its architecture here
    (another recipe of the same net runs at nearly the same speed) with the same distillation teacher or none (the
    teacher's forward passes cost more than the student's training: resnet20 with se_mxresnext29_16x2d as teacher
    trains ~110 s an epoch against ~47 s alone); flagged as estimated."""
    epoch_times: dict[tuple, list[float]] = {}
    for r in records:
        if r['epoch_time_s'] is not None and r['model']:
            epoch_times.setdefault(_speed_key(r), []).append(r['epoch_time_s'])
    for r in records:
        times = epoch_times.get(_speed_key(r))
        if r['eta_s'] is None and r['state'] in UNFINISHED_STATES and r['epochs'] and times:
            r['eta_s'] = round(statistics.median(times) * (r['epochs'] - r['epochs_done']), 1)
            r['eta_estimated'] = True



def _speed_key(record: dict[str, Any]) -> tuple:
    """Runs that train at the same speed: the same architecture, taught by the same teacher(s) or by none."""
    teacher = record['teacher']
    return record['model'], tuple(teacher) if isinstance(teacher, list) else teacher


def _median(values: Iterable[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _run_config(folder: Path) -> dict[str, Any]:
    path = folder / 'config.yaml'
    if not path.is_file():
        return {}
    import yaml
    return yaml.safe_load(path.read_text()) or {}


def _latest_checkpoint_name(folder: Path) -> Optional[str]:
    from cifar_timm.training.checkpoint import latest_checkpoint
    path = latest_checkpoint(folder / 'checkpoints')
    return path.name if path is not None else None


def print_status(records: list[dict[str, Any]]) -> None:
    if not records:
        print('no runs')
        return
    width = max(len(r['name']) for r in records)
    for r in records:
        val = f'val {r["val_top1"]:6.2f}%' if r['val_top1'] is not None else 'val    -   '
        epoch_time = f'{r["epoch_time_s"]:7.2f} s/epoch' if r['epoch_time_s'] is not None else '      - s/epoch'
        eta = f'eta {"~" if r["eta_estimated"] else " "}{r["eta_s"] / 60:6.1f} min' if r['eta_s'] else ''
        exact = f'exact {r["top1_exact"]:.2f}%' if r.get('top1_exact') is not None else ''
        rc = f'exit {r["returncode"]}' if r['state'] == 'failed' else ''
        # weights published from a run folder this machine no longer has: no epoch count to show
        done = '   -' if r['state'] == 'published' and not r['epochs_done'] else f'{r["epochs_done"]:4d}'
        print(f'{r["name"]:{width}s} {r["state"]:10s} epoch {done}/{r["epochs"] or "?":<4} {val} '
              f'{epoch_time} {eta} {exact} {rc}'.rstrip())
    left = [r for r in records if r['state'] in UNFINISHED_STATES]
    if left:
        known = [r['eta_s'] for r in left if r['eta_s']]
        unknown = len(left) - len(known)
        print(f'left: {len(left)} run{"s" * (len(left) != 1)}, {sum(known) / 3600:.1f} h of training for '
              f'{len(known)} of them (~: from another run of the same model here)'
              + (f'; {unknown} not timed yet' if unknown else ''))


def status(args: argparse.Namespace) -> int:
    import cifar_timm.training.run_log  # noqa: F401  (loads torch, as collect_status will: before the --max-wait clock)
    runs = Path(args.runs_dir)
    deadline = time.monotonic() + (args.max_wait or 0)
    while True:
        records = collect_status(runs)
        active = any(r['state'] in ('queued', 'running') for r in records) and \
            launcher_alive(read_json(runs / STATE_FILE, {}), runs)
        if not args.follow or not active or time.monotonic() + args.follow > deadline:
            break
        print(f'-- {utc_now()}')
        print_status(records)
        sys.stdout.flush()
        time.sleep(args.follow)
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        if args.follow:
            print(f'-- {utc_now()}')
        print_status(records)
    return 0


# --------------------------------------------------------------------------------------------------------- pack

def _meta_archive(runs: Path) -> bytes:
    """Every run's small files (all but checkpoints and export weights) as one tar.gz, paths relative to runs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz', compresslevel=6) as tar:
        for path in sorted(runs.rglob('*')):
            rel = path.relative_to(runs)
            if (not path.is_file() or any(part.startswith('.') for part in rel.parts) or 'checkpoints' in rel.parts
                    or rel.parts[-2:] == ('export', 'model.safetensors')):
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # replaced by a run while we walked the folder
                continue
            if path.name == RUN_LOG and len(data) > LOG_TAIL_BYTES:
                data = b'[launch_many pack: only the last 2 MiB of this log]\n' + data[-LOG_TAIL_BYTES:]
            info = tarfile.TarInfo(rel.as_posix())
            info.size, info.mtime, info.mode = len(data), int(path.stat().st_mtime), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _payload(runs: Path, exports_too: bool = True) -> list[tuple[str, Path, str]]:
    """(kind, path, why) in shipping order: finished runs' weights, then unfinished runs' newest checkpoints."""
    from cifar_timm.training.checkpoint import latest_checkpoint
    exports, checkpoints = [], []
    for folder in sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith('.')):
        weights = folder / 'export' / 'model.safetensors'
        if weights.is_file():
            if exports_too:
                exports.append(('export', weights, 'finished run: weights for `cifar-timm export`'))
        elif (checkpoint := latest_checkpoint(folder / 'checkpoints')) is not None:
            checkpoints.append(('checkpoint', checkpoint, 'unfinished run: resume=auto'))
    def size(item: tuple[str, Path, str]) -> int:
        return item[1].stat().st_size
    return sorted(exports, key=size) + sorted(checkpoints, key=size)  # smallest first: the most runs per MiB


def pack(args: argparse.Namespace) -> int:
    runs, out = Path(args.runs_dir), Path(args.out)
    part_size, budget = int(args.max_file_mib * MIB), int(args.max_total_mib * MIB) - MANIFEST_RESERVE
    if args.max_files < 2 or part_size < 1024 or part_size > budget:
        raise LaunchError('need --max-files >= 2 and 1 KiB <= --max-file-mib <= --max-total-mib - 0.25; '
                          'the device returns 8 files of 16 MiB, 64 MiB together')
    if not runs.is_dir():
        raise LaunchError(f'no runs folder {runs}; pass --runs-dir where `start` put the runs')
    out.mkdir(parents=True, exist_ok=True)
    if any(out.glob('v[0-9]*-*')) or any(out.glob('manifest-v*.json')):
        raise LaunchError(f'{out} already holds a pack; give an empty folder (on a device: $OUT)')
    ledger_path = runs / LEDGER_FILE
    ledger = read_json(ledger_path, {'volume': 0, 'shipped': {}})
    if args.all:
        ledger['shipped'] = {}
    volume = ledger['volume'] + 1
    files, left_out, used, slots = [], [], 0, args.max_files - 1  # one slot for the manifest

    def emit(name: str, rel: str, kind: str, data: bytes, part: int, parts: int, offset: int, digest: str,
             whole: int) -> None:
        nonlocal used, slots
        file = f'v{volume:03d}-{name}' + (f'.part{part + 1}of{parts}' if parts > 1 else '')
        (out / file).write_bytes(data)
        files.append({'file': file, 'path': rel, 'kind': kind, 'sha256': digest, 'size': whole, 'part': part,
                      'parts': parts, 'offset': offset, 'part_sha256': hashlib.sha256(data).hexdigest()})
        used, slots = used + len(data), slots - 1

    meta = _meta_archive(runs)
    meta_parts = [meta[i:i + part_size] for i in range(0, len(meta), part_size)] or [b'']
    if len(meta_parts) > slots or len(meta) > budget:
        raise LaunchError(f'the logs and metrics alone ({len(meta) / MIB:.1f} MiB) do not fit the limits; '
                          f'raise --max-file-mib/--max-total-mib or trim the runs folder')
    meta_sha = hashlib.sha256(meta).hexdigest()
    for i, chunk in enumerate(meta_parts):
        emit('meta.tar.gz', 'meta.tar.gz', 'meta', chunk, i, len(meta_parts), i * part_size, meta_sha, len(meta))

    for kind, path, why in ([] if args.no_payload else _payload(runs, exports_too=not args.checkpoints_only)):
        rel = path.relative_to(runs).as_posix()
        try:
            data = path.read_bytes()  # one read: the parts and the digest are of the same bytes
        except FileNotFoundError:  # a running run pruned it just now
            left_out.append({'path': rel, 'kind': kind, 'size': 0, 'why': 'replaced while packing',
                             'parts_left': 'all'})
            continue
        digest = hashlib.sha256(data).hexdigest()
        parts = max(1, -(-len(data) // part_size))
        done = set(ledger['shipped'].get(rel, {}).get(digest, []))
        missing = []
        for i in range(parts):
            if i in done:
                continue
            chunk = data[i * part_size:(i + 1) * part_size]
            if slots > 0 and used + len(chunk) <= budget:
                emit(f'{path.parents[1].name}-{path.name}', rel, kind, chunk, i, parts, i * part_size, digest,
                     len(data))
                ledger['shipped'].setdefault(rel, {}).setdefault(digest, []).append(i)
            else:
                missing.append(i + 1)
        if missing:
            left_out.append({'path': rel, 'kind': kind, 'size': len(data), 'why': why,
                             'parts_left': f'{len(missing)} of {parts}'})

    manifest = {'volume': volume, 'created': utc_now(), 'runs_dir': str(runs.resolve()),
                'limits': {'max_files': args.max_files, 'max_file_mib': args.max_file_mib,
                           'max_total_mib': args.max_total_mib},
                'files': files, 'left_out': left_out, 'status': collect_status(runs)}
    manifest_path = out / f'manifest-v{volume:03d}.json'
    write_json_atomic(manifest_path, manifest)
    ledger['volume'] = volume
    write_json_atomic(ledger_path, ledger)  # a lost transfer is re-shipped with --all
    total = used + manifest_path.stat().st_size
    print(f'volume {volume}: {len(files) + 1} files, {total / MIB:.1f} MiB in {out}')
    for item in left_out:
        print(f'  left out: {item["path"]} ({item["size"] / MIB:.1f} MiB, {item["parts_left"]} parts, '
              f'{item["why"]}): run `pack` again for it')
    if not left_out:
        print('  complete: nothing left to ship')
    return 0


# ------------------------------------------------------------------------------------------------------- export

def export(args: argparse.Namespace) -> int:
    """`cifar-timm export` for every finished run named <model>.<tag>: hub/<model>.<tag>/ and its record."""
    from cifar_timm.commands.export import export_run
    from cifar_timm.hub import default_hub_dir, sha256_file
    runs = Path(args.runs_dir)
    hub = Path(args.hub_dir) if args.hub_dir else default_hub_dir()
    exported, skipped = [], []
    for record in collect_status(runs):
        folder = runs / record['name']
        model, _, tag = record['name'].partition('.')
        if record['state'] != 'finished':
            continue
        if not tag or model != (read_json(folder / 'export' / 'results.json') or {}).get('model'):
            skipped.append(f'{record["name"]} (not named <model>.<tag>: export it with `cifar-timm export '
                           f'{folder} --tag TAG`)')
            continue
        published = hub / record['name'] / 'model.safetensors'
        if not args.force and published.is_file() and \
                sha256_file(published) == sha256_file(folder / 'export' / 'model.safetensors'):
            continue  # already exported: nothing to redo (--force writes the card and record again)
        repo = export_run(folder, tag=tag, hub_dir=args.hub_dir, force=args.force)
        exported.append(repo)
        print(f'exported {record["name"]}: {repo} (exact test top-1 {record.get("top1_exact")}%)')
    for item in skipped:
        print(f'skipped {item}')
    if exported:
        print('commit each with its record, e.g. `git add hub/ cifar_timm/models/pretrained_tags.json`, then run '
              '`pytest tests/test_published_weights.py`')
    else:
        print('nothing new to export')
    return 0


# ------------------------------------------------------------------------------------------------------- unpack

def unpack(args: argparse.Namespace) -> int:
    from cifar_timm.hub import write_bytes_atomic
    runs = Path(args.runs_dir)
    manifests = []
    for folder in map(Path, args.dirs):
        found = sorted(folder.glob('manifest-v*.json'))
        if not found:
            raise LaunchError(f'{folder} holds no manifest-v*.json; pass the folders `pack` wrote (fetched $OUT)')
        manifests += [(read_json(p), folder) for p in found]
    manifests.sort(key=lambda m: (m[0]['created'], m[0]['volume']))
    groups: dict[tuple[str, str], dict[int, tuple[Path, dict]]] = {}
    for manifest, folder in manifests:
        for f in manifest['files']:
            groups.setdefault((f['path'], f['sha256']), {})[f['part']] = (folder / f['file'], f)
    incomplete = []
    # Whole files in volume order (later volumes overwrite earlier ones), meta archives extracted as they come.
    seen = set()
    for manifest, _ in manifests:
        for f in manifest['files']:
            key = (f['path'], f['sha256'])
            if key in seen:
                continue
            seen.add(key)
            parts = groups[key]
            if len(parts) < f['parts']:
                incomplete.append(f'{f["path"]} ({len(parts)} of {f["parts"]} parts)')
                continue
            data = b''.join(_read_part(*parts[i]) for i in range(f['parts']))
            if hashlib.sha256(data).hexdigest() != f['sha256']:
                raise LaunchError(f'{f["path"]}: the joined parts do not match the sha256 in the manifest; '
                                  f'fetch that volume again')
            if f['kind'] == 'meta':
                _extract_meta(data, runs)
            else:
                write_bytes_atomic(runs / f['path'], data)
                print(f'unpacked {runs / f["path"]} ({len(data) / MIB:.1f} MiB)')
    last = manifests[-1][0]
    for item in last['left_out']:
        if not (runs / item['path']).is_file():
            incomplete.append(f'{item["path"]} (left out on the device)')
    for item in incomplete:
        print(f'incomplete: {item}: run `pack` on the device again and unpack its folder too')
    print_status(collect_status(runs))
    return 0


def _read_part(path: Path, entry: dict[str, Any]) -> bytes:
    if not path.is_file():
        raise LaunchError(f'{path} is listed in its manifest but missing; fetch that folder again')
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry['part_sha256']:
        raise LaunchError(f'{path} is damaged (sha256 differs from its manifest); fetch that folder again')
    return data


def _extract_meta(data: bytes, runs: Path) -> None:
    from cifar_timm.hub import write_bytes_atomic
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as tar:
        for member in tar.getmembers():
            rel = Path(member.name)
            if not member.isfile() or rel.is_absolute() or '..' in rel.parts:
                continue  # only plain files below the runs folder
            write_bytes_atomic(runs / rel, tar.extractfile(member).read())


# ---------------------------------------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='launch_many.py', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True, metavar='{start,status,stop,export,pack,unpack}')

    def runs_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument('--runs-dir', default=os.environ.get(RUNS_DIR_ENV) or 'runs',
                       help=f'folder of the run folders (default ${RUNS_DIR_ENV}, else runs)')

    p = sub.add_parser('start', help='check the configs, then train them in a detached supervisor')
    p.add_argument('models', nargs='*', help='recipe names (recipes/configs/NAME.yaml), YAML paths, or NAME=RECIPE to '
                                            'name the run folder; run in order, after those of --queue')
    p.add_argument('--queue', type=Path, default=None,
                   help='a queue file (recipes/queues/*.yaml): its runs first, its sets before --set')
    runs_dir(p)
    p.add_argument('--data-dir', required=True, help='root holding cifar-10-batches-py/')
    p.add_argument('--concurrency', '-j', type=int, default=None,
                   help='trainings at a time (default 4 with a GPU, 1 on a CPU-only machine)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help=f'override for every run, after the defaults {" ".join(DEFAULT_SETS)} (repeatable)')
    p.add_argument('--stop-after', type=float, default=None, metavar='MINUTES',
                   help='stop every run (each saves a checkpoint) this many minutes after the start')
    p.add_argument('--set-for', action='append', nargs=2, default=[], metavar=('MODEL', 'KEY=VALUE'),
                   help='override for one run, after --set (repeatable)')
    p.add_argument('--hub-dir', default=None,
                   help='runs whose <model>.<tag>/ weights are here are skipped (default: hub/ of this checkout)')
    p.add_argument('--retrain', action='append', default=[], metavar='NAME',
                   help='train this run even though its weights are published (repeatable)')
    p.set_defaults(func=start)

    p = sub.add_parser('status', help='one line per run: state, epoch, val top-1, epoch time, ETA')
    runs_dir(p)
    p.add_argument('--json', action='store_true', help='all numbers as JSON (epoch times for the notes)')
    p.add_argument('--follow', type=float, default=None, metavar='SECONDS',
                   help='print the table every SECONDS until no run is left or --max-wait has passed')
    p.add_argument('--max-wait', type=float, default=540.0, metavar='SECONDS',
                   help='with --follow: return after this long (default 540, inside a 10-minute device call)')
    p.set_defaults(func=status)

    p = sub.add_parser('stop', help='SIGTERM the runs (each saves a checkpoint) and the supervisor')
    runs_dir(p)
    p.add_argument('--timeout', type=float, default=120.0, help='seconds before SIGKILL (default 120)')
    p.set_defaults(func=stop)

    p = sub.add_parser('pack', help='write the runs into OUT as size-capped files plus a manifest')
    p.add_argument('out', help='empty folder to write into (on a device: $OUT)')
    runs_dir(p)
    p.add_argument('--max-files', type=int, default=8, help='files at most, manifest included (default 8)')
    p.add_argument('--max-file-mib', type=float, default=16.0, help='MiB per file at most (default 16)')
    p.add_argument('--max-total-mib', type=float, default=64.0, help='MiB in all at most (default 64)')
    p.add_argument('--all', action='store_true', help='ship everything again, not only what earlier packs did not')
    p.add_argument('--no-payload', action='store_true', help='logs, metrics and results only (no weights)')
    p.add_argument('--checkpoints-only', action='store_true',
                   help='no export weights: a pack to carry to a device so unfinished runs resume there')
    p.set_defaults(func=pack)

    p = sub.add_parser('export', help='publish every finished <model>.<tag> run into hub/ (cifar-timm export)')
    runs_dir(p)
    p.add_argument('--hub-dir', default=None, help='folder of Hub repos (default: hub/ of this checkout)')
    p.add_argument('--force', action='store_true',
                   help='export again, replacing published weights of the same name (e.g. after results.json changed)')
    p.set_defaults(func=export)

    p = sub.add_parser('unpack', help='join the files of one or more packs back into the runs folder')
    p.add_argument('dirs', nargs='+', help='folders holding manifest-v*.json and its files')
    runs_dir(p)
    p.set_defaults(func=unpack)

    p = sub.add_parser('_supervise')  # what `start` detaches; not for users
    p.add_argument('state_path', type=Path)
    p.set_defaults(func=lambda a: supervise(a.state_path))
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LaunchError as e:
        print(f'launch_many.py: error: {e}', file=sys.stderr)
        return 2
    except Exception as e:  # a config error from cifar_timm: its message already names the fix
        from cifar_timm.errors import CifarTimmError
        if isinstance(e, CifarTimmError):
            print(f'launch_many.py: error: {e}', file=sys.stderr)
            return 2
        raise


if __name__ == '__main__':
    sys.exit(main())
