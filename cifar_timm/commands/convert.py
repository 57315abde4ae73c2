"""`cifar-timm convert`: a source project's published checkpoint as a timm Hub folder (config.json +
model.safetensors) that `timm.create_model('local-dir:OUT', pretrained=True)` loads with the source's preprocessing;
`--report` scores all of them for docs/peer_checkpoints.md. The work is done in `cifar_timm.convert`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..convert import SOURCES, ConversionError, convert_checkpoint, published_checkpoint, write_converted

HELP = ("convert a source project's checkpoint (akamaster, fattorib, Keras) into a timm folder; --report scores "
        "them all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('file', nargs='?', type=Path, help="the source's checkpoint (.th / .pth, or Keras .h5)")
    parser.add_argument('--from', dest='source', choices=list(SOURCES),
                        help='the project that saved it: akamaster (resnet20..1202), fattorib (resnet*_fattorib), '
                             'keras (iamVarunAnand: se_mxresnet20)')
    parser.add_argument('--model', help='the cifar-timm architecture it is, e.g. resnet20, resnet20_fattorib')
    parser.add_argument('--out', type=Path, help='folder to write (config.json, model.safetensors, README.md)')
    parser.add_argument('--force', action='store_true', help='replace the files of an --out folder that has some')
    report = parser.add_argument_group('results page (instead of converting one file)')
    report.add_argument('--report', type=Path, metavar='PAGE',
                        help='score every published source checkpoint in --peer-dir and our weights; write PAGE')
    report.add_argument('--peer-dir', type=Path,
                        help="folder of the sources' files, laid out as ../shared/peer_weights")
    report.add_argument('--data-dir', type=Path, help='folder that holds cifar-10-batches-py/')
    report.add_argument('--no-verify-md5', dest='verify_md5', action='store_false',
                        help='skip the official md5 check (needed for the shared rebuilt copy)')


def run(args: argparse.Namespace) -> int:
    if args.report:
        if args.file or args.source or args.model or args.out:
            raise ConversionError('--report writes the results page: pass it without FILE, --from, --model or --out')
        if not (args.peer_dir and args.data_dir):
            raise ConversionError('--report needs --peer-dir (the sources\' files) and --data-dir (CIFAR-10)')
        from ..convert.report import write_report
        print(f'wrote {write_report(args.report, args.peer_dir, args.data_dir, args.verify_md5)}')
        return 0
    if not (args.file and args.source and args.model and args.out):
        raise ConversionError('convert needs FILE, --from, --model and --out, e.g. `cifar-timm convert --from '
                              'akamaster resnet20-12fca82f.th --model resnet20 --out converted/resnet20.akamaster`')
    model = convert_checkpoint(args.source, args.file, args.model)
    out = write_converted(model, args.out, args.source, args.file, force=args.force)
    known = published_checkpoint(args.file)
    what = f'the checkpoint {SOURCES[args.source].repo} published' if known else args.file.name
    print(f'converted {what} into {args.model}: {out}\n'
          f"load it with timm.create_model('local-dir:{out}', pretrained=True) (mean {model.pretrained_cfg['mean']}, "
          f"std {model.pretrained_cfg['std']})")
    return 0
