"""The `cifar-timm` entry point: the top-level and every subcommand's --help render (argparse formats them)."""
import pytest

from cifar_timm.cli import COMMANDS, main


@pytest.mark.parametrize('argv', [['--help']] + [[name, '--help'] for name in COMMANDS])
def test_help_renders(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert 'usage: cifar-timm' in capsys.readouterr().out
