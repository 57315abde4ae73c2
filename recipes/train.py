"""Train a cifar-timm model from a recipe: `accelerate launch recipes/train.py --config recipes/configs/NAME.yaml
[key=value ...]` (or plain `python recipes/train.py ...`). Everything lives in `cifar_timm.training`; see
recipes/README.md for the config keys, resume and multi-GPU use."""
import sys

from cifar_timm.training import main

if __name__ == '__main__':
    sys.exit(main())
