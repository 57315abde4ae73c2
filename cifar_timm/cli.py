"""The `cifar-timm` command line: one subcommand per module in `cifar_timm/commands/`.

Each command module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import CifarTimmError

# subcommand -> module under cifar_timm.commands
COMMANDS = {
    'list': 'list_models',
    'eval': 'evaluate',
    'predict': 'predict',
    'bench': 'bench',
    'export': 'export',
    'publish': 'publish',
    'convert': 'convert',
    'tables': 'tables',
    'plot': 'plot',
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='cifar-timm', description='CIFAR-10 models for timm.')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f'cifar_timm.commands.{module_name}')
        # argparse %-formats help strings (e.g. '95%' in eval's); the description is printed as is
        command_parser = sub.add_parser(name, help=module.HELP.replace('%', '%%'), description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CifarTimmError as e:
        print(f'cifar-timm {args.command}: error: {e}', file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`cifar-timm list | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == '__main__':
    sys.exit(main())
