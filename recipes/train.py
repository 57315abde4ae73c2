"""Train a cifar-timm model from a recipe: `accelerate launch recipes/train.py --config recipes/configs/NAME.yaml
[key=value ...]` (or plain `python recipes/train.py ...`). Everything lives in `cifar_timm.training`; see
recipes/README.md for the config keys, resume and multi-GPU use."""
import signal
import sys


class _EarlySigterm:
    """Notes a SIGTERM that arrives while torch and timm import (several seconds on a small CPU), which would
    otherwise kill the run without a checkpoint; the trainer's own handler takes the note over and stops at its first
    check, saving one."""
    set = False

    def __call__(self, signum, frame):
        self.set = True


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, _EarlySigterm())

from cifar_timm.training import main  # noqa: E402  (after the handler: this import is the slow part)

if __name__ == '__main__':
    sys.exit(main())
