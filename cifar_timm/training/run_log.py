"""What a run leaves for people to read: `metrics.csv`, TensorBoard logs in `tb/` and `curves.png`.

One row per epoch with the columns INTERFACES.md fixes. On resume the CSV keeps the rows of the epochs the
checkpoint covers and drops later ones (a killed run may have logged an epoch it never checkpointed).
"""
from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

from ..hub import write_bytes_atomic, write_text_atomic

# The last two are empty for a copy without provenance (the official download: every image exact).
METRIC_COLUMNS = ('epoch', 'lr', 'train_loss', 'train_top1', 'val_loss', 'val_top1', 'epoch_time_s', 'images_per_s',
                  'val_top1_exact', 'val_top1_jpeg')


class RunLog:
    """Per-epoch metrics to CSV and TensorBoard, and the loss/accuracy curves as a PNG."""

    def __init__(self, output: Path, resume_epoch: int = 0, tensorboard: bool = True):
        self.output = Path(output)
        self.csv_path = self.output / 'metrics.csv'
        self.rows: list[dict[str, Any]] = [r for r in read_metrics(self.csv_path) if int(r['epoch']) < resume_epoch]
        self._write_csv()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional (dev) dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(log_dir=str(self.output / 'tb'), purge_step=resume_epoch)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.rows.append({k: row.get(k) for k in METRIC_COLUMNS})
        self._write_csv()
        if self.writer is not None:
            for key in METRIC_COLUMNS[1:]:
                if row.get(key) is not None:
                    self.writer.add_scalar(key, row[key], row['epoch'])
            self.writer.flush()

    def _write_csv(self) -> None:
        text = io.StringIO(newline='')
        writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.csv_path, text.getvalue())

    def plot(self) -> Optional[Path]:
        """Loss and top-1 against epoch, train and validation; None when matplotlib is missing. The loop calls it
        with each checkpoint, not every epoch: a figure costs about 0.16 s of CPU (measured on a 2-vCPU VM), which
        adds up over 180 epochs and many runs sharing one machine's cores."""
        try:
            import matplotlib
            matplotlib.use('Agg')
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        epochs = [int(r['epoch']) + 1 for r in self.rows]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key, title in ((ax_loss, 'loss', 'loss'), (ax_acc, 'top1', 'top-1 (%)')):
            for split in ('train', 'val'):
                values = [as_float(r[f'{split}_{key}']) for r in self.rows]
                if any(v is not None for v in values):
                    ax.plot(epochs, [v if v is not None else float('nan') for v in values], label=split)
            ax.set_xlabel('epoch')
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = self.output / 'curves.png'
        image = io.BytesIO()
        fig.savefig(image, format='png', dpi=100)
        plt.close(fig)
        write_bytes_atomic(path, image.getvalue())
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def as_float(value: Any) -> Optional[float]:
    """A metric as float; None for a missing one (empty in the CSV)."""
    if value in (None, ''):
        return None
    return float(value)


def steady_epoch_times(times: Sequence[float]) -> list[float]:
    """The epoch times after the first, which pays the warm-up (cuDNN autotuning, torch.compile, the first
    DataLoader start); all of them when there is only one."""
    return list(times[1:] or times)


def median_epoch_time(times: Sequence[float]) -> Optional[float]:
    """Median of `steady_epoch_times(times)`; None without epochs."""
    steady = steady_epoch_times(times)
    return statistics.median(steady) if steady else None
