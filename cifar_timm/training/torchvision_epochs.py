"""The torchvision data path (`data.loader: torchvision`) behind the loop's loader interface.

The loop talks to loaders through GpuCifarLoader's surface: `len`, `set_epoch`, `state_dict`/`load_state_dict`,
iteration from the saved step. Here one DataLoader per epoch is built by `cifar_timm.data.torchvision_loader`
with a shuffle seeded by (seed, epoch), sharded over processes by Accelerate (each process takes whole batches of
batch_size / processes in turn), and a mid-epoch resume skips the batches already done. The worker processes draw
the augmentations from their own generators, so this path is reproducible in order but not bit-exact.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch


class TorchvisionEpochLoader:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, device: torch.device,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, channels_last: bool = False,
                 **loader_kwargs: Any):
        from ..errors import CifarTimmError
        if batch_size % num_replicas:
            raise CifarTimmError(f'global batch {batch_size} is not divisible by {num_replicas} processes: '
                                 f'choose a multiple of the number of processes')
        self.images, self.labels = images, labels
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.channels_last = channels_last
        self.loader_kwargs = loader_kwargs
        self.epoch, self.step = 0, 0

    def _epoch_loader(self):
        from accelerate.data_loader import prepare_data_loader

        from ..data import torchvision_loader
        # Pinned host batches, as the seeds' CUDA pipelines use, so the copy to the GPU can overlap compute.
        loader = torchvision_loader(self.images, self.labels, self.batch_size // self.num_replicas, train=True,
                                    seed=self.seed * 1_000_003 + self.epoch, pin_memory=self.device.type == 'cuda',
                                    **self.loader_kwargs)
        if self.num_replicas > 1:
            loader = prepare_data_loader(loader, num_processes=self.num_replicas, process_index=self.rank)
        return loader

    def __len__(self) -> int:
        per_process = len(self.images) // (self.batch_size // self.num_replicas)
        return per_process // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.step = epoch, 0

    def state_dict(self) -> dict[str, Any]:
        return {'epoch': self.epoch, 'step': self.step, 'batch_size': self.batch_size, 'seed': self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step = int(state['epoch']), int(state['step'])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from accelerate.data_loader import skip_first_batches
        loader = self._epoch_loader()
        if self.step:
            loader = skip_first_batches(loader, self.step)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for x, y in loader:
            if self.step >= len(self):
                break
            self.step += 1
            yield (x.to(self.device, memory_format=memory_format, non_blocking=True),
                   y.to(self.device, non_blocking=True))
        self.epoch, self.step = self.epoch + 1, 0
