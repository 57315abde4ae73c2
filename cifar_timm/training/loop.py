"""The training run: Accelerate around timm's pieces, from config to export folder.

One direction of flow: data -> (mixup) -> model -> loss -> optimizer step -> schedule/EMA, epoch after epoch;
validation after each epoch on the held-out split; the test set once at the end with the final weights.

`batch_size` is the global batch of one optimizer step. The loader yields global micro-batches of
batch_size / grad_accum_steps, each split across the processes (GpuCifarLoader's contract), so a recipe gives the
same optimisation on one device with accumulation as on several without.

Stops: SIGTERM saves a checkpoint at the next optimizer step (with several processes, at the next check) and exits
with 143; a NaN/inf loss stops without saving, so the newest checkpoint stays the last good one. Checks run every
`log.check_every` optimizer steps (one device sync), and at once when SIGTERM arrived.
"""
from __future__ import annotations

import os
import signal
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import timm
import torch

from ..errors import CifarTimmError
from . import checkpoint as ckpt
from .components import build_ema, build_loss, build_mixup, build_optimizer, build_scheduler
from .config import ConfigError, dump_config
from .cpu import ThreadGovernor, keep_freed_memory, resolve_channels_last, resolve_mixed_precision
from .distill import build_distillation, teacher_identity, teacher_results, teacher_words
from .export import git_sha, hardware, write_export
from .mixup import LabelPreservingMixup
from .run_log import RunLog, as_float, read_metrics

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


class NonFiniteLossError(CifarTimmError):
    """The loss became NaN or inf."""


class TrainingInterrupted(CifarTimmError):
    """SIGTERM arrived; a checkpoint was saved."""
    exit_code = SIGTERM_EXIT_CODE


class _StopFlag:
    """Set by SIGTERM, read by the loop at its next check (a handler must not do the saving itself)."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. called from a notebook worker): no handler
            self._previous = None
        # A SIGTERM noted before the trainer started (recipes/train.py's handler, during the imports) still stops.
        self.set = self.set or getattr(self._previous, 'set', False) is True
        return self

    def _handle(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train(config: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Run the recipe in `config` (from `load_config`); returns results.json's content on the main process."""
    from accelerate.state import AcceleratorState
    threads = torch.get_num_threads()  # cpu_threads and the thread governor change it for the whole process
    try:
        with _StopFlag() as stop:
            return _Run(config, stop).run()
    finally:
        torch.set_num_threads(threads)
        # Accelerate keeps one global state per process; a later in-process run (tests, notebooks) may want other
        # settings. Launched multi-process runs end with the process, so their process group is left alone.
        if AcceleratorState._shared_state and AcceleratorState().num_processes == 1:
            AcceleratorState._reset_state(reset_partial_state=True)


class _Run:
    def __init__(self, config: dict[str, Any], stop: _StopFlag):
        self.config = config
        self.stop = stop
        self.output = Path(config['output'])

    # ---- setup -------------------------------------------------------------------------------------------------
    def run(self) -> Optional[dict[str, Any]]:
        cfg = self.config
        self.git_sha = git_sha()
        resume_path = self._resume_path()
        state = ckpt.load_checkpoint(resume_path) if resume_path else None  # before the slow setup: fail fast
        self._setup_accelerator()
        self._setup_data()
        self._setup_model()
        self._setup_optimization()
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # well-formed, but not this run's checkpoint
            raise ckpt.CheckpointError(f'checkpoint {resume_path} does not fit this run ({type(e).__name__}: {e}); '
                                       f'resume it with the config it was written with') from e
        self._record_segment(state)
        if self.acc.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / 'config.yaml').write_text(dump_config(self.resolved_config()))
            self.log = RunLog(self.output, resume_epoch=self.start_epoch, tensorboard=cfg['log']['tensorboard'])
            if resume_path:
                self.acc.print(f'resumed from {resume_path} (epoch {self.start_epoch}, step {self.num_updates})')
        try:
            self._train_epochs()
        finally:
            if self.acc.is_main_process:
                self.log.close()
        self.acc.wait_for_everyone()
        results = self._finish() if self.acc.is_main_process else None
        self.acc.wait_for_everyone()
        return results

    def _setup_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        cfg = self.config
        if cfg['deterministic']:
            os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
        # Without cpu=True on a CPU-only machine, `accelerate launch --multi_gpu` processes would each train alone.
        on_cpu = not torch.cuda.is_available()
        device = torch.device('cpu') if on_cpu else torch.device('cuda')
        # 'auto' settings become the machine's best (cpu.py); the resolved values are what the run records
        self.mixed_precision = resolve_mixed_precision(cfg['mixed_precision'], device)
        self.channels_last = resolve_channels_last(cfg['channels_last'], device)
        self.threads = None
        if on_cpu:
            if cfg['cpu_allocator'] == 'keep':
                keep_freed_memory()
            if cfg['cpu_threads'] == 'auto':
                self.threads = ThreadGovernor()
            else:
                torch.set_num_threads(cfg['cpu_threads'])
        try:
            self.acc = Accelerator(
                cpu=on_cpu,
                mixed_precision=self.mixed_precision,
                gradient_accumulation_steps=cfg['grad_accum_steps'],
                step_scheduler_with_optimizer=False,
            )
        except ValueError as e:
            raise ConfigError(f'cannot set up Accelerate with mixed_precision={self.mixed_precision} ({e}); '
                              f'on CPU use mixed_precision=bf16 or no') from e
        set_seed(cfg['seed'])
        self.device = self.acc.device
        self.amp_dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(self.mixed_precision)

    def _resume_path(self) -> Optional[Path]:
        """The checkpoint to continue from; never a fresh start over a run already in `output`."""
        resume = self.config['resume']
        folder = self.output / 'checkpoints'
        if resume not in (None, 'auto'):
            return Path(resume)
        latest = ckpt.latest_checkpoint(folder)
        if resume == 'auto' and latest is not None:
            return latest
        finished = (self.output / 'export').exists()
        epochs_logged = len(read_metrics(self.output / 'metrics.csv'))
        if resume is None and (latest is not None or finished or epochs_logged):
            raise ConfigError(f'output {self.output} already holds a run; continue it with resume=auto, '
                              f'or choose another output=...')
        if finished:  # resume=auto, but nothing to continue from: training again would replace the export
            raise ConfigError(f'output {self.output} holds a finished run (export/) and no checkpoint in {folder} to '
                              f'continue from; it is kept as it is. Choose another output=..., or move the folder '
                              f'away to train it again')
        if epochs_logged:
            raise ConfigError(f'output {self.output} holds metrics.csv with {epochs_logged} epoch(s) but no checkpoint '
                              f'in {folder} (were its checkpoints not copied or unpacked?); starting afresh would '
                              f'replace them. Put the checkpoints back to continue, or choose another output=...')
        return None

    def _setup_data(self) -> None:
        from .datasets import load_training_data
        cfg = self.config
        if not timm.is_model(cfg['model']):
            raise ConfigError(f'model {cfg["model"]!r} is not registered; run `cifar-timm list` for the names')
        try:
            model_cfg = timm.models.get_pretrained_cfg(cfg['model']).to_dict()
        except RuntimeError as e:  # a tag that is not published
            raise ConfigError(f'model {cfg["model"]!r}: {e} `cifar-timm list --pretrained` shows the published tags; '
                              f'or name the architecture alone') from e
        self.data = load_training_data(cfg['data'], model_cfg)
        (self.train_images, self.train_labels), (self.val_images, self.val_labels) = self.data.train, self.data.val
        self.val_exact = self.data.val_exact
        self.micro_batch = cfg['batch_size'] // cfg['grad_accum_steps']
        if len(self.train_labels) < self.micro_batch:
            raise ConfigError(f'{len(self.train_labels)} training images are fewer than one batch of '
                              f'{self.micro_batch}; lower batch_size or raise data.limit')

    def _build_loader(self, mean, std):
        """GpuCifarLoader (default) or the torchvision path, both yielding global micro-batches split by rank."""
        d = self.config['data']
        common = dict(pad=d['pad'], pad_mode=d['pad_mode'], flip=d['flip'], mean=mean, std=std, seed=self.config['seed'])
        if d['loader'] == 'torchvision':
            from .torchvision_epochs import TorchvisionEpochLoader
            if d['cutout']:
                raise ConfigError('data.cutout is not available with data.loader=torchvision; use data.loader=gpu')
            return TorchvisionEpochLoader(
                self.train_images, self.train_labels, self.micro_batch, device=self.device,
                num_replicas=self.acc.num_processes, rank=self.acc.process_index,
                channels_last=self.channels_last, num_workers=d['num_workers'], **common)
        from ..data import GpuCifarLoader
        return GpuCifarLoader(
            self.train_images, self.train_labels, self.micro_batch, train=True, device=self.device,
            channels_last=self.channels_last, cutout=d['cutout'],
            num_replicas=self.acc.num_processes, rank=self.acc.process_index, **common)

    def _setup_model(self) -> None:
        cfg = self.config
        model_args = dict(cfg['model_args'])
        if self.data.own_images:  # a classifier for the tree's classes; with pretrained=true timm swaps in a new one
            classes = len(self.data.classes)
            if model_args.setdefault('num_classes', classes) != classes:
                raise ConfigError(f'model_args.num_classes={model_args["num_classes"]} but {self.data.name} has '
                                  f'{classes} class folders; leave num_classes out (it is set from the folders)')
        model = timm.create_model(cfg['model'], pretrained=cfg['pretrained'], **model_args)
        self.model_args = model_args  # what rebuilds it: the export's config.json records them
        self.mean = tuple(cfg['data']['mean'] or model.pretrained_cfg['mean'])
        self.std = tuple(cfg['data']['std'] or model.pretrained_cfg['std'])
        self.num_classes = model.num_classes
        if cfg['sync_bn']:
            if self.device.type == 'cuda' and self.acc.num_processes > 1:
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                warnings.warn('sync_bn=true ignored: SyncBatchNorm needs several GPU processes')
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.loader = self._build_loader(self.mean, self.std)

    def _setup_optimization(self) -> None:
        cfg = self.config
        accum = cfg['grad_accum_steps']
        self.updates_per_epoch = len(self.loader) // accum
        if self.updates_per_epoch < 1:
            raise ConfigError(f'an epoch of {len(self.loader)} batches holds no full accumulation of {accum}; '
                              f'lower grad_accum_steps or raise data.limit')
        optimizer = build_optimizer(self.model, cfg['optimizer'])
        self.scheduler = build_scheduler(optimizer, cfg['scheduler'], cfg['epochs'], self.updates_per_epoch)
        self.mixup = build_mixup(cfg['mixup'], cfg['loss']['label_smoothing'], self.num_classes)
        soft = self.mixup is not None and not isinstance(self.mixup, LabelPreservingMixup)
        self.criterion = build_loss(cfg['loss']['label_smoothing'], soft_targets=soft)
        self.ema = build_ema(self.model, cfg['ema'])
        self.raw_model = self.model  # shares its parameters with the DDP / compiled wrappers below
        self.model, self.optimizer = self.acc.prepare(self.model, optimizer)
        if cfg['compile']:
            self.model = torch.compile(self.model)
        self.distill = build_distillation(self.model, cfg['distill'], self.criterion, classes=self.data.classes,
                                          mean=self.mean, std=self.std, device=self.device,
                                          channels_last=self.channels_last)
        self.teacher_identity = teacher_identity(self.distill) if self.distill is not None else None

    def _restore(self, state: Optional[dict[str, Any]]) -> None:
        self.start_epoch, self.num_updates, self.train_time_s = 0, 0, 0.0
        self.epoch_sums, self.epoch_elapsed_s = None, 0.0
        if state is None:
            return
        if state['config']['model'] != self.config['model']:
            raise ckpt.CheckpointError(f'checkpoint is for model {state["config"]["model"]}, not '
                                       f'{self.config["model"]}; resume it with its own config')
        # checkpoints from before 2026-12-05 have no teacher record
        if 'teacher' in state and state['teacher'] != self.teacher_identity:
            raise ckpt.CheckpointError(f'checkpoint was trained with {teacher_words(state["teacher"])}, this run '
                                       f'has {teacher_words(self.teacher_identity)}: the config names another '
                                       f'teacher, or its published weights changed since. Resume with the teacher it '
                                       f'was trained with, or start afresh in another output=...')
        self.raw_model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state['scheduler'])
        if self.acc.scaler is not None and state.get('scaler'):
            self.acc.scaler.load_state_dict(state['scaler'])
        if self.ema is not None and state.get('ema'):
            self.ema.load_state_dict(state['ema'])
        self.loader.load_state_dict(state['loader'])
        self.start_epoch, self.num_updates = state['epoch'], state['num_updates']
        self.train_time_s = state['train_time_s']
        self.epoch_sums = state.get('epoch_sums')
        self.epoch_elapsed_s = state.get('epoch_elapsed_s', 0.0)
        rngs = state['rng']
        if len(rngs) == self.acc.num_processes:
            ckpt.set_rng_state(rngs[self.acc.process_index])
        else:
            warnings.warn(f'checkpoint has RNG states of {len(rngs)} processes, this run has '
                          f'{self.acc.num_processes}: RNG streams restart, so the run is not bit-exact')
        if self.scheduler is not None:  # the LR of the step about to run
            self.scheduler.step(self.start_epoch)
            if self.config['scheduler']['per_iteration']:
                self.scheduler.step_update(self.num_updates)

    def _record_segment(self, state: Optional[dict[str, Any]]) -> None:
        """Each stretch of the run with its machine, precision and memory format. `auto` resolves anew at every
        resume, so a run continued on another machine (the project's machines differ between sessions) may change
        precision halfway; the card must say so rather than name the last machine only."""
        here = {'hardware': hardware(self.device, self.acc.num_processes), 'mixed_precision': self.mixed_precision,
                'channels_last': self.channels_last}
        segments = [dict(s) for s in (state or {}).get('segments') or []]
        if state is not None and not segments:  # a checkpoint from before segments: its config.yaml tells the rest
            segments = [{'from_epoch': 0, 'hardware': None, **self._previous_settings()}]
        if not segments or any(segments[-1].get(key) != value for key, value in here.items()):
            segments.append({'from_epoch': self.start_epoch, **here})
        self.segments = segments

    def _previous_settings(self) -> dict[str, Any]:
        """Precision and memory format from the config.yaml the run's last start wrote (None where unreadable)."""
        import yaml
        try:
            previous = yaml.safe_load((self.output / 'config.yaml').read_text())
        except (OSError, yaml.YAMLError):
            previous = None
        if not isinstance(previous, dict):
            previous = {}
        return {'mixed_precision': previous.get('mixed_precision'), 'channels_last': previous.get('channels_last')}

    # ---- training ------------------------------------------------------------------------------------------------
    def _train_epochs(self) -> None:
        cfg = self.config
        total = cfg['epochs'] * self.updates_per_epoch
        max_steps = cfg['debug']['max_steps']
        self.progress = None
        if self.acc.is_main_process and cfg['log']['progress']:
            from tqdm.auto import tqdm
            self.progress = tqdm(total=total, initial=self.num_updates, unit='step', dynamic_ncols=True,
                                 desc=cfg['model'])
        try:
            for epoch in range(self.start_epoch, cfg['epochs']):
                row = self._train_one_epoch(epoch)
                if row is None:  # debug.max_steps reached mid-epoch
                    break
                if self.acc.is_main_process:  # logged first: a resume drops rows its checkpoint does not cover
                    self.log.log_epoch(row)
                    self.acc.print(_summary(row, cfg['epochs']))
                last = epoch + 1 == cfg['epochs']
                if (epoch + 1) % cfg['checkpoint']['every'] == 0 or last:
                    self._save_checkpoint(epoch + 1)
                if max_steps is not None and self.num_updates >= max_steps:
                    break
        finally:
            if self.progress is not None:
                self.progress.close()

    def _train_one_epoch(self, epoch: int) -> Optional[dict[str, Any]]:
        cfg = self.config
        accum = cfg['grad_accum_steps']
        self.model.train()
        self.loader.set_epoch(epoch)
        # Sums over this epoch's samples so far (restored on a mid-epoch resume): loss*n, correct, n.
        sums = torch.tensor(self.epoch_sums or [0.0, 0.0, 0.0], dtype=torch.float64, device=self.device)
        self.epoch_sums = None
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        # A mid-epoch resume continues the epoch's clock and image count, so its time and img/s are the whole epoch's
        start_time = time.perf_counter() - self.epoch_elapsed_s
        images = round(float(sums[2])) * self.acc.num_processes
        self.epoch_elapsed_s = 0.0
        micro_steps = self.updates_per_epoch * accum  # whole accumulations only
        step_in_epoch = self.loader.state_dict()['step']
        lr = self._lr()
        for x, y in self.loader:
            step_in_epoch += 1
            with self.acc.accumulate(self.model):
                loss, logits = self._forward(x, y, step_in_epoch)
                bad |= ~torch.isfinite(loss.detach())
                self.acc.backward(loss)
                if self.acc.sync_gradients and cfg['clip_grad']['mode']:
                    from timm.utils import dispatch_clip_grad
                    self.acc.unscale_gradients()
                    dispatch_clip_grad(self.model.parameters(), cfg['clip_grad']['value'], cfg['clip_grad']['mode'])
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                sums[:2] += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()])
                sums[2] += len(y)  # a Python number: no host-to-device copy (and no sync) per step
            images += len(y) * self.acc.num_processes
            if not self.acc.sync_gradients:
                continue
            self.num_updates += 1
            if self.ema is not None:
                self.ema.update(self.raw_model, step=self.num_updates)
            if self.scheduler is not None:
                self.scheduler.step_update(num_updates=self.num_updates)
            lr = self._lr()
            if self.progress is not None:
                elapsed = time.perf_counter() - start_time
                self.progress.update(1)
                self.progress.set_postfix(epoch=epoch, lr=f'{lr:.3g}', img_s=f'{images / max(elapsed, 1e-9):.0f}',
                                          refresh=False)
            at_end = step_in_epoch >= micro_steps
            max_steps = cfg['debug']['max_steps']
            hit_max = max_steps is not None and self.num_updates >= max_steps
            # SIGTERM's flag is a host-side bool, free to read every step; with several processes the stop waits for
            # the next regular check, where all of them agree (a collective that one rank entered alone would hang).
            stop_now = self.stop.set and self.acc.num_processes == 1
            if at_end or hit_max or stop_now or self.num_updates % cfg['log']['check_every'] == 0:
                self._check(bad, epoch, sums, time.perf_counter() - start_time)
                if self.threads is not None:
                    self.threads.update()
            if hit_max and not at_end:
                return None
            if at_end:
                break
        epoch_time = time.perf_counter() - start_time
        self.train_time_s += epoch_time
        if self.scheduler is not None:
            self.scheduler.step(epoch + 1)
        loss_sum, correct, n = self.acc.reduce(sums, reduction='sum').tolist()
        row = {'epoch': epoch, 'lr': lr, 'train_loss': loss_sum / max(n, 1), 'train_top1': 100.0 * correct / max(n, 1),
               'epoch_time_s': round(epoch_time, 3),
               'images_per_s': round(images / max(epoch_time, 1e-9), 1)}
        row.update(self._validate())
        return row

    def _forward(self, x: torch.Tensor, y: torch.Tensor, step_in_epoch: int):
        cfg = self.config
        target = y
        if isinstance(self.mixup, LabelPreservingMixup):
            # A generator seeded by (seed, optimizer step, micro-step, rank): resumes draw the same pairs.
            rng = np.random.default_rng([cfg['seed'], self.num_updates, step_in_epoch, self.acc.process_index])
            x = self.mixup(x, rng)
        elif self.mixup is not None:
            x, target = self.mixup(x, y)
        with self.acc.autocast():
            if self.distill is not None:  # the teacher sees the same (mixed) batch
                out = self.distill(x, target)
                logits, loss = out['output'], out['loss']
            else:
                logits = self.model(x)
                loss = self.criterion(logits, target)
        nan_at = cfg['debug']['nan_at_step']
        if nan_at is not None and self.num_updates == nan_at:
            loss = loss * float('nan')
        return loss, logits.detach()

    def _check(self, bad: torch.Tensor, epoch: int, sums: torch.Tensor, elapsed: float) -> None:
        """Stop on a non-finite loss (saving nothing) or on SIGTERM (saving a checkpoint); all ranks agree."""
        flags = torch.stack([bad.float(), torch.tensor(float(self.stop.set), device=self.device)])
        flags = self.acc.reduce(flags, reduction='sum')
        is_bad, stopping = (flags > 0).tolist()
        if is_bad:
            last = ckpt.latest_checkpoint(self.output / 'checkpoints')
            kept = f'the last good checkpoint is {last} (resume=auto continues from it)' if last else \
                'no checkpoint was saved yet'
            raise NonFiniteLossError(
                f'loss became NaN/inf in epoch {epoch} by optimizer step {self.num_updates}; training stopped and '
                f'{kept}. Lower optimizer.lr, add clip_grad.mode=norm clip_grad.value=1.0, or use '
                f'mixed_precision=bf16 instead of fp16')
        if stopping:
            self.epoch_elapsed_s = elapsed  # added to train_time_s when the resumed epoch ends
            self.epoch_sums = sums.tolist()
            path = self._save_checkpoint(epoch)
            raise TrainingInterrupted(f'SIGTERM: saved {path} at epoch {epoch}, optimizer step {self.num_updates}; '
                                      f'continue with resume=auto')

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]['lr']

    # ---- checkpoints, evaluation, export ----------------------------------------------------------------------------
    def _save_checkpoint(self, epoch: int) -> Optional[Path]:
        """Save at an optimizer-step boundary; `epoch` is the epoch to run next (the loader knows where in it)."""
        from accelerate.utils import gather_object
        rngs = gather_object([ckpt.rng_state()])
        path = None
        if self.acc.is_main_process:
            state = {
                'model': self.raw_model.state_dict(),
                'optimizer': self.optimizer.state_dict(),
                'scheduler': self.scheduler.state_dict() if self.scheduler is not None else None,
                'scaler': self.acc.scaler.state_dict() if self.acc.scaler is not None else None,
                'ema': self.ema.state_dict() if self.ema is not None else None,
                'loader': self.loader.state_dict(),
                'epoch': epoch,
                'num_updates': self.num_updates,
                'epoch_sums': self.epoch_sums,
                'epoch_elapsed_s': self.epoch_elapsed_s,
                'train_time_s': self.train_time_s,
                'segments': self.segments,
                'teacher': self.teacher_identity,
                'rng': rngs,
                'config': self.config,
            }
            path = ckpt.save_checkpoint(state, ckpt.checkpoint_path(self.output / 'checkpoints', self.num_updates),
                                        keep=self.config['checkpoint']['keep'])
            self.log.plot()
        self.acc.wait_for_everyone()
        return path

    def _eval_model(self) -> torch.nn.Module:
        if self.ema is not None and self.config['ema']['export']:
            return self.ema.module
        return self.raw_model

    def _evaluate(self, images: torch.Tensor, labels: torch.Tensor, fp32: bool = False) -> dict[str, Any]:
        """Metrics of the weights to export (evaluate() switches to eval mode and back), in the run's precision or
        in fp32."""
        from ..evaluation import evaluate
        with accelerate_autocast_removed(self._eval_model()) as model:
            return evaluate(model, images, labels, device=self.device, amp_dtype=None if fp32 else self.amp_dtype,
                            mean=self.mean, std=self.std)

    def _validate(self) -> dict[str, Any]:
        """Validation loss/top-1 on the held-out split, and on its exact and JPEG parts apart where the copy has
        both (main process; others wait)."""
        out = {'val_loss': None, 'val_top1': None}
        if self.acc.is_main_process and len(self.val_labels):
            if self.val_exact is None:
                metrics = self._evaluate(self.val_images, self.val_labels)
                out = {'val_loss': metrics['nll'], 'val_top1': metrics['top1']}
            else:  # two passes over the two parts cost what one pass over the whole split does
                parts = {name: self._evaluate(self.val_images[m], self.val_labels[m])
                         for name, m in (('exact', self.val_exact), ('jpeg', ~self.val_exact))}
                n = sum(p['n'] for p in parts.values())
                out = {'val_loss': sum(p['nll'] * p['n'] for p in parts.values()) / n,
                       'val_top1': 100.0 * sum(p['correct'] for p in parts.values()) / n,
                       'val_top1_exact': parts['exact']['top1'], 'val_top1_jpeg': parts['jpeg']['top1']}
        self.acc.wait_for_everyone()
        return out

    def _jpeg_gap(self) -> dict[str, Any]:
        """The exact validation images scored as they are and after the shared copy's JPEG round trip: the same
        images both ways, so the difference is what the JPEG-decoded training data taught the net to expect."""
        if self.val_exact is None:
            return {}
        from ..data.provenance import jpeg_round_trip
        images, labels = self.val_images[self.val_exact], self.val_labels[self.val_exact]
        as_jpeg = self._evaluate(jpeg_round_trip(images), labels)['top1']
        return {'top1_val_exact_as_jpeg': as_jpeg, 'n_val_exact': len(labels)}

    def _finish(self) -> dict[str, Any]:
        """The one test-set evaluation (final weights), then the export folder."""
        cfg = self.config
        rows = self.log.rows
        results = {
            'model': cfg['model'],
            'dataset': self.data.name,
            'top1_val': as_float(rows[-1]['val_top1']) if rows else None,
            'top1_val_exact': as_float(rows[-1].get('val_top1_exact')) if rows else None,
            'top1_val_jpeg': as_float(rows[-1].get('val_top1_jpeg')) if rows else None,
            **self._jpeg_gap(),
            'n_train': len(self.train_labels),
            'n_val': len(self.val_labels),
            **self._test_results(),
            'epochs': cfg['epochs'],
            'train_time_s': round(self.train_time_s, 1),
            'hardware': '; '.join(dict.fromkeys(s['hardware'] or 'not recorded' for s in self.segments)),
            'mixed_precision': self.mixed_precision,
            'channels_last': self.channels_last,
            'segments': self.segments,
            'git_sha': self.git_sha,
            'config': self.resolved_config(),
        }
        if self.teacher_identity is not None:  # the published weight(s) it learned from, with tags resolved
            results.update(teacher_results(self.teacher_identity))
        cfg_overlay = {}  # what the export's pretrained cfg must say beyond the architecture's
        if cfg['data']['mean'] or cfg['data']['std']:  # how its inputs were normalised
            cfg_overlay.update(mean=self.mean, std=self.std)
        if self.data.own_images:  # which classes its outputs are
            results['label_names'] = list(self.data.classes)
            cfg_overlay.update(num_classes=len(self.data.classes), label_names=list(self.data.classes))
        export = write_export(self.output, self._eval_model(), self.model_args, results, cfg_overlay)
        self.acc.print(f'{_test_summary(results)}; export in {export}')
        return results

    def _test_results(self) -> dict[str, Any]:
        """Test metrics of the final weights: CIFAR-10's test split (and its exact images on their own), or the
        ImageFolder run's data.test_dir; nothing when the run has no test split."""
        test = self.data.load_test()
        if test is None:
            return {}
        images, labels = test
        n_test = min(self.config['data']['test_limit'] or len(labels), len(labels))
        # fp32 whatever the run trained in: the published number is the one `cifar-timm eval` reproduces by default
        # (a bf16 evaluation moved se_mxresnet20's exact-image score by one image)
        metrics = self._evaluate(images[:n_test], labels[:n_test], fp32=True)
        results = {'top1_test': metrics['top1'], 'top5_test': metrics['top5'], 'nll_test': metrics['nll'],
                   'ece_test': metrics['ece'], 'test_precision': 'fp32'}
        if self.data.exact_test is None:
            return {**results, 'top1_test_ci95': list(metrics['top1_ci95']), 'n_test': metrics['n']}
        exact = slice(self.data.exact_test.start, min(self.data.exact_test.stop, n_test))
        exact_metrics = metrics if exact == slice(0, n_test) else self._evaluate(images[exact], labels[exact],
                                                                                  fp32=True)
        return {**results, 'top1_exact': exact_metrics['top1'], 'top1_exact_ci95': list(exact_metrics['top1_ci95']),
                'n_exact': exact_metrics['n'], 'n_test': metrics['n']}

    def resolved_config(self) -> dict[str, Any]:
        threads = self.threads.max_threads if self.threads is not None else self.config['cpu_threads']
        return {**self.config, 'mixed_precision': self.mixed_precision, 'channels_last': self.channels_last,
                'cpu_threads': threads, 'git_sha': self.git_sha, 'num_processes': self.acc.num_processes,
                'device': str(self.device)}


@contextmanager
def accelerate_autocast_removed(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` with the forward it had before `Accelerator.prepare`, for the duration of the block.

    With mixed precision, prepare() replaces the model's own `forward` by one that runs under autocast (and casts
    the outputs to fp32), so an evaluation asked for fp32 (`amp_dtype=None`) would still run in bf16: a run's test
    rows, said to be fp32, were bf16 until 2026-12-05. The training step does not need the replaced forward: it runs
    under `acc.autocast()` itself. Evaluating in the run's precision passes `amp_dtype`, so the block changes
    nothing there."""
    replaced = model.__dict__.get('forward')
    original = model.__dict__.get('_original_forward')
    if replaced is None or original is None:  # not prepared with mixed precision (or an EMA copy made before)
        yield model
        return
    model.forward = original
    try:
        yield model
    finally:
        model.forward = replaced


def _test_summary(results: dict[str, Any]) -> str:
    if results.get('top1_exact') is not None:
        lo, hi = results['top1_exact_ci95']
        return (f'test top-1 {results["top1_test"]:.2f}% (n={results["n_test"]}), exact {results["top1_exact"]:.2f}% '
                f'[{lo:.1f}, {hi:.1f}] (n={results["n_exact"]})')
    if results.get('top1_test') is not None:
        lo, hi = results['top1_test_ci95']
        return f'test top-1 {results["top1_test"]:.2f}% [{lo:.1f}, {hi:.1f}] (n={results["n_test"]})'
    val = results['top1_val']
    return 'no test split (data.test_dir)' + ('' if val is None else f', validation top-1 {val:.2f}%')


def _summary(row: dict[str, Any], epochs: int) -> str:
    val = '' if row['val_top1'] is None else f'  val loss {row["val_loss"]:.4f} top-1 {row["val_top1"]:.2f}%'
    return (f'epoch {row["epoch"] + 1}/{epochs}  lr {row["lr"]:.4g}  train loss {row["train_loss"]:.4f} '
            f'top-1 {row["train_top1"]:.2f}%{val}  {row["epoch_time_s"]:.1f}s {row["images_per_s"]:.0f} img/s')
