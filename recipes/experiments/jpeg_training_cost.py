"""What training on JPEG-decoded images costs on clean images: the same training images with their exact pixels or
after the shared copy's JPEG round trip (quality 75, 4:2:0), the same recipe, scored on the same clean images.

The shared CIFAR-10 copy (../shared/cifar10) has exact pixels for 8,068 training images; the rest went through JPEG.
Comparing the exact and JPEG parts of the validation split says how a JPEG-trained net fares on each kind of image,
not what the JPEG training itself cost. This builds the controlled pair:

- `exact/train`: the exact training images outside the 5,000-image validation split (`data.split_seed` 0), as they are;
- `jpeg/train`:  the same images after `jpeg_round_trip` (what the shared copy's other 41,932 went through);
- `val_exact/`:  the validation split's exact images (clean, never trained on), the images both are scored on;
- `val_jpeg/`:   the validation split's JPEG-decoded images, for the other direction.

Each is an ImageFolder tree (`<class>/<index>.png`) that `recipes/train.py data.format=imagefolder` trains on:

    python recipes/experiments/jpeg_training_cost.py --data-dir data --out runs/jpeg_cost
    for v in exact jpeg; do
      python recipes/train.py --config recipes/configs/resnet20_short.yaml data.format=imagefolder \\
        data.dir=runs/jpeg_cost/$v/train data.test_dir=runs/jpeg_cost/val_exact data.val_size=0 \\
        data.mean=[0.4914,0.4822,0.4465] data.std=[0.2470,0.2435,0.2616] epochs=100 output=runs/jpeg_cost/run_$v
    done
    python recipes/experiments/jpeg_training_cost.py score --data-dir data \
      --runs runs/jpeg_cost/run_exact runs/jpeg_cost/run_jpeg

`score` runs each run's exported weights (fp32) over the whole validation split and prints top-1 on its exact and
JPEG-decoded parts with Wilson intervals, and each run against the first on the same images: the paired
difference with a 95% interval (normal approximation over the images' correct/wrong pairs). `--runs` also takes
published hub/<model>.<tag>/ folders. `--test-jpeg-quality 75` scores each run as well on the same images after a JPEG
round trip at that quality, against the run on them as they are: whether a JPEG-trained net does better on clean
images once they look like its training images. `--ensembles` scores as well every combination of two or more of the
runs by the mean of their logits, as `distill.teacher: [A, B]` teaches: which weights make the best teacher together.
The test split is never read.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Callable, Optional

import torch
from PIL import Image

from cifar_timm.constants import CIFAR10_CLASSES
from cifar_timm.data import load_cifar10
from cifar_timm.data.provenance import exact_mask, jpeg_round_trip
from cifar_timm.data.splits import train_val_indices


def exact_mask_or_exit(data_dir: Path, n: int) -> torch.Tensor:
    """Which training images are exact; a copy without provenance.npz (the official download) has no JPEG part."""
    exact = exact_mask(data_dir, 'train', n)
    if exact is None:
        raise SystemExit(f'{data_dir} has no provenance.npz: every image is exact, so there is no JPEG cost to measure; '
                         f'pass the copy built by ../shared/cifar10/build.py')
    return exact


def write_tree(root: Path, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, copies: int = 1) -> None:
    """PNG files (lossless) under root/<class>/<training-set index>[_<copy>].png; `copies` > 1 oversamples."""
    for image, label, index in zip(images, labels.tolist(), indices.tolist()):
        folder = root / CIFAR10_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f'{index:05d}{f"_{copy}" if copy else ""}.png')


def training_set_and_masks(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The copy's training images (uint8 N,3,32,32) and labels, which are exact, and which are in the validation split."""
    train = load_cifar10(args.data_dir, 'train', verify_md5=False)
    images, labels = train.images, torch.as_tensor(train.labels)
    exact = exact_mask_or_exit(args.data_dir, len(labels))
    _, val_idx = train_val_indices(len(labels), args.val_size, args.split_seed)
    in_val = torch.zeros(len(labels), dtype=torch.bool)
    in_val[val_idx] = True
    return images, labels, exact, in_val


def build(args: argparse.Namespace) -> None:
    images, labels, exact, in_val = training_set_and_masks(args)
    trees = {
        'exact/train': (exact & ~in_val, False),
        'jpeg/train': (exact & ~in_val, True),
        'val_exact': (exact & in_val, False),
        'val_jpeg': (~exact & in_val, False),
    }
    for name, (mask, round_trip) in trees.items():
        indices = mask.nonzero().squeeze(1)[:args.limit]
        chosen = images[indices]
        write_tree(args.out / name, jpeg_round_trip(chosen) if round_trip else chosen, labels[indices], indices)
        print(f'{args.out / name}: {len(indices):,} images')
    if args.mixed_share:
        build_mixed(args, images, labels, (exact & ~in_val).nonzero().squeeze(1)[:args.limit])


def build_mixed(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
    """The same training images as the shared copy mixes them: a random `mixed_share` of them exact, the rest after
    the JPEG round trip (`mixed/train`), and the same with each exact image written `oversample` times."""
    keep = torch.randperm(len(indices), generator=torch.Generator().manual_seed(args.split_seed))
    keep = keep[:round(args.mixed_share * len(indices))]
    is_kept = torch.zeros(len(indices), dtype=torch.bool)
    is_kept[keep] = True
    exact_idx, jpeg_idx = indices[is_kept], indices[~is_kept]
    jpeg_images = jpeg_round_trip(images[jpeg_idx])
    for name, copies in [('mixed/train', 1), (f'mixed_x{args.oversample}/train', args.oversample)]:
        write_tree(args.out / name, images[exact_idx], labels[exact_idx], exact_idx, copies)
        write_tree(args.out / name, jpeg_images, labels[jpeg_idx], jpeg_idx)
        print(f'{args.out / name}: {len(exact_idx):,} exact images x{copies}, {len(jpeg_idx):,} JPEG')


def _weights_folder(run: Path) -> Path:
    """A run folder's exported weights (run/export/), or a published hub/<model>.<tag>/ folder itself."""
    for folder in (run / 'export', run):
        if (folder / 'model.safetensors').exists() and (folder / 'config.json').exists():
            return folder
    raise SystemExit(f'{run} holds no exported weights: pass a run folder with export/ (`cifar-timm export` writes '
                     f'it at the end of a run) or a hub/<model>.<tag>/ folder')


def classifier(run: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The run's exported weights in fp32, as a function from uint8 images (N, 3, 32, 32) to their logits."""
    from cifar_timm.evaluation import create_eval_model

    folder = _weights_folder(run)
    model = create_eval_model(json.loads((folder / 'config.json').read_text())['architecture'],
                              checkpoint=str(folder / 'model.safetensors')).eval()
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg['mean']).view(1, 3, 1, 1)
    std = torch.tensor(cfg['std']).view(1, 3, 1, 1)

    @torch.no_grad()
    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([model((batch.float() / 255 - mean) / std) for batch in images.split(500)])
    return predict


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """Top-1 of b minus top-1 of a on the same images, in points, with a 95% interval (normal approximation)."""
    d = b.float() - a.float()
    mean, half = d.mean().item(), 1.96 * d.std().item() / len(d) ** 0.5
    return 100 * mean, 100 * (mean - half), 100 * (mean + half)


def score(args: argparse.Namespace) -> None:
    from cifar_timm.evaluation import wilson_interval

    images, labels, exact, in_val = training_set_and_masks(args)
    images, labels, exact = images[in_val], labels[in_val], exact[in_val]
    # (run, None): the images as they are; (run, q): the same images JPEG-encoded at quality q before the net sees them
    inputs = {None: images, **{q: jpeg_round_trip(images, quality=q) for q in args.test_jpeg_quality}}
    hits, logits = {}, {}
    for run in args.runs:
        logits_of = classifier(run)  # loaded once, whatever the number of qualities
        for q, x in inputs.items():
            out = logits_of(x)
            hits[run, q] = out.argmax(1) == labels
            if q is None:
                logits[run] = out
    reference = args.runs[0]
    rows = []  # (name, hits, and the name and hits of the row it is compared with, or None)
    for (run, quality), hit in hits.items():
        name = run.name if quality is None else f'{run.name}, inputs JPEG q{quality}'
        against = (reference, None) if quality is None else (run, None)
        rows.append((name, hit, None if (run, quality) == against else (against[0].name, hits[against])))
    for size in range(2, len(args.runs) + 1) if args.ensembles else ():
        for members in itertools.combinations(args.runs, size):
            hit = torch.stack([logits[run] for run in members]).mean(0).argmax(1) == labels
            rows.append((f'mean logits of {" + ".join(run.name for run in members)}', hit,
                         (reference.name, hits[reference, None])))
    for part, mask in [('exact', exact), ('JPEG-decoded', ~exact), ('all', torch.ones_like(exact))]:
        print(f'validation, {part} images ({int(mask.sum()):,}):')
        for name, hit, against in rows:
            correct, n = int(hit[mask].sum()), int(mask.sum())
            lo, hi = wilson_interval(correct, n)
            line = f'  {name}: {100 * correct / n:.2f}% [{lo:.1f}, {hi:.1f}]'
            if against is not None:
                line += ' | minus {}: {:+.2f} points [{:+.2f}, {:+.2f}]'.format(
                    against[0], *paired_difference(against[1][mask], hit[mask]))
            print(line)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('command', nargs='?', choices=('build', 'score'), default='build')
    parser.add_argument('--data-dir', type=Path, required=True, help='the shared copy, built by build.py')
    parser.add_argument('--out', type=Path, help='build: folder for the four ImageFolder trees')
    parser.add_argument('--runs', type=Path, nargs='+',
                        help='score: run folders (or hub/<model>.<tag>/ folders), the first the reference')
    parser.add_argument('--test-jpeg-quality', type=int, nargs='+', default=[], metavar='Q',
                        help='score: also score each run on the same images JPEG-encoded at quality Q, against '
                             'the run on them as they are (meeting a JPEG-trained net halfway at test time)')
    parser.add_argument('--ensembles', action='store_true',
                        help='score: also every combination of two or more runs, by the mean of their logits')
    parser.add_argument('--mixed-share', type=float, default=0.0,
                        help='build: also the mixed trees, this share exact (the shared copy: 7,245 / 45,000 = 0.161)')
    parser.add_argument('--oversample', type=int, default=5, help='build: copies of each exact image in mixed_xN')
    parser.add_argument('--val-size', type=int, default=5000)
    parser.add_argument('--split-seed', type=int, default=0)
    parser.add_argument('--limit', type=int, default=None, help='build: at most this many images per tree (smoke runs)')
    args = parser.parse_args(argv)
    if args.command == 'build' and not args.out:
        parser.error('build needs --out FOLDER')
    if args.command == 'score' and not args.runs:
        parser.error('score needs --runs RUN_DIR [RUN_DIR ...]')
    build(args) if args.command == 'build' else score(args)


if __name__ == '__main__':
    main()
