"""docs/peer_checkpoints.md: each checkpoint a source project published, converted, beside cifar-timm's own weights
for the same architecture, all scored on the same exact test images. The sources' numbers are the anchors the zoo
must beat; the page picks up our weights from the published-weight records as they land.

Each source file is converted exactly as a user would (`convert_checkpoint`, `write_converted`), loaded back with
`timm.create_model('local-dir:...', pretrained=True)` and evaluated with the normalisation its config.json carries.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from ..constants import EXACT_TEST_SLICE
from ..hub import load_pretrained_tags, sha256_file, write_text_atomic
from .converter import convert_checkpoint, write_converted
from .readers import ConversionError
from .sources import PUBLISHED_CHECKPOINTS, SOURCES, PublishedCheckpoint

COMMAND = ('cifar-timm convert --report docs/peer_checkpoints.md --peer-dir ../shared/peer_weights '
           '--data-dir DATA --no-verify-md5')
N_EXACT = EXACT_TEST_SLICE.stop - EXACT_TEST_SLICE.start


def write_report(page: Path, peer_dir: Path, data_dir: Path, verify_md5: bool = True) -> Path:
    """Score every published source checkpoint found in `peer_dir` and our weights; write the page."""
    from ..data import load_cifar10

    peer_dir = Path(peer_dir)
    if not peer_dir.is_dir():
        raise ConversionError(f'--peer-dir {peer_dir} is not a folder: pass the folder holding the sources\' files '
                              f'(laid out as ../shared/peer_weights)')
    test = load_cifar10(data_dir, 'test', verify_md5=verify_md5)
    images, labels = test.images[EXACT_TEST_SLICE], test.labels[EXACT_TEST_SLICE]
    rows = []
    for checkpoint in PUBLISHED_CHECKPOINTS:
        path = peer_dir / checkpoint.path
        rows.append((checkpoint, _score_source(checkpoint, path, images, labels) if path.is_file() else None))
    own = {c.model: _score_own(c.model, images, labels) for c in PUBLISHED_CHECKPOINTS}
    write_text_atomic(Path(page), render_page(rows, own))
    return Path(page)


def _score_source(checkpoint: PublishedCheckpoint, path: Path, images, labels) -> dict[str, Any]:
    import timm

    if sha256_file(path) != checkpoint.sha256:
        raise ConversionError(f'{path} is not the file {SOURCES[checkpoint.source].repo} published (its sha256 '
                              f'differs from {checkpoint.sha256}): restore the original to score it.')
    model = convert_checkpoint(checkpoint.source, path, checkpoint.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_converted(model, Path(tmp) / checkpoint.model, checkpoint.source, path)
        return _evaluate(timm.create_model(f'local-dir:{folder}', pretrained=True), images, labels)


def _score_own(model_name: str, images, labels) -> list[tuple[str, Optional[str], dict[str, Any]]]:
    """(name.tag, licence, metrics) of each published weight of the architecture."""
    from timm.models import split_model_name_tag

    from ..evaluation import create_eval_model

    records = load_pretrained_tags()
    return [(t, records[t].get('license'), _evaluate(create_eval_model(t, pretrained=True), images, labels))
            for t in sorted(records) if split_model_name_tag(t)[0] == model_name]


def _evaluate(model: torch.nn.Module, images, labels) -> dict[str, Any]:
    from ..evaluation import evaluate
    return evaluate(model, images, labels, device='cpu')  # float32: equal counts of correct images on every CPU


def render_page(rows: list[tuple[PublishedCheckpoint, Optional[dict[str, Any]]]],
                own: dict[str, list[tuple[str, Optional[str], dict[str, Any]]]]) -> str:
    table = ['| architecture | weights | licence | top-1 % (correct of 1,017) | 95% interval | source claims % |',
             '| --- | --- | --- | ---: | ---: | ---: |']
    for checkpoint, metrics in rows:
        source = SOURCES[checkpoint.source]
        weights = f'{source.repo} `{Path(checkpoint.path).name}`'
        table.append(f'| `{checkpoint.model}` | {weights} | {source.license or "none"} | {_cells(metrics)} | '
                     f'{checkpoint.claimed_top1:.2f} |')
        for name_tag, license, ours in own.get(checkpoint.model, []):
            table.append(f'| | cifar-timm `{name_tag}` | {license or "-"} | {_cells(ours)} | |')
        if not own.get(checkpoint.model):
            table.append('| | cifar-timm | | no published weights yet | | |')
    exact_images = f'test images 0-{EXACT_TEST_SLICE.stop - 1}, the {N_EXACT:,}'
    return f"""# The sources' checkpoints beside cifar-timm's weights

Generated, do not edit by hand; DATA is the folder holding `cifar-10-batches-py/`:

    {COMMAND}

Run it again when weights are published (`cifar-timm list --pretrained`): it scores every published tag of these
architectures. These are the numbers the zoo's own weights must beat.

Every number is the top-1 on CIFAR-10 {exact_images} whose pixels are exact in the project's copy,
in float32 on the CPU without test-time augmentation, with its 95% Wilson interval. Each source checkpoint is
converted with `cifar-timm convert`, loaded back with `timm.create_model('local-dir:OUT', pretrained=True)` and
evaluated with the normalisation its config.json carries, the source's own: ImageNet's mean/std for akamaster and
fattorib, the CIFAR-10 statistics for the Keras net. "source claims" is the top-1 the source's README reports on the
full official test set.

{chr(10).join(table)}

## Licences
- akamaster/pytorch_resnet_cifar10: {SOURCES['akamaster'].license_note}
- iamVarunAnand/image_classification: {SOURCES['keras'].license_note}
- fattorib/ResNets-CIFAR10: {SOURCES['fattorib'].license_note}

None of these files, and nothing converted from them, is part of this repository or of `hub/`: users convert their
own copies (README.md, "Converting the sources' checkpoints").
"""


def _cells(metrics: Optional[dict[str, Any]]) -> str:
    if metrics is None:
        return 'file not found | '
    lo, hi = metrics['top1_ci95']
    return f"{metrics['top1']:.2f} ({metrics['correct']:,}) | {lo:.2f}-{hi:.2f}"
