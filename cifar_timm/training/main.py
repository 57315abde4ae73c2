"""Command line of `recipes/train.py`: `--config FILE` plus dotted `key=value` overrides, errors without tracebacks."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..errors import CifarTimmError

USAGE_EXAMPLES = """examples:
  accelerate launch recipes/train.py --config recipes/configs/resnet20.yaml
  python recipes/train.py --config recipes/configs/resnet20.yaml epochs=1 data.limit=2048 data.dir=/data/cifar10
  python recipes/train.py --config recipes/configs/resnet20.yaml output=runs/r20 resume=auto
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='train.py', description='Train a cifar-timm model from a recipe config.', epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', '-c', help='recipe YAML, e.g. recipes/configs/resnet20.yaml')
    parser.add_argument('overrides', nargs='*', metavar='key=value',
                        help='dotted overrides, e.g. epochs=1 data.dir=/data mixed_precision=bf16 resume=auto')
    parser.add_argument('--print-config', action='store_true', help='print the resolved config and exit')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import cifar_timm  # noqa: F401  (registers the models with timm)
    from .config import dump_config, load_config
    from .loop import TrainingInterrupted, train
    try:
        config = load_config(args.config, args.overrides)
        if args.print_config:
            print(dump_config(config), end='')
            return 0
        train(config)
    except TrainingInterrupted as e:
        print(f'train.py: {e}', file=sys.stderr)
        return e.exit_code
    except CifarTimmError as e:
        print(f'train.py: error: {e}', file=sys.stderr)
        return 1
    return 0
