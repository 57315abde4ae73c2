"""CIFAR-10 constants shared by every model cfg, loader and command: one table, no copies elsewhere."""

CIFAR10_NAME = 'CIFAR-10'

# Official CIFAR-10 per-channel statistics of the training set (RGB, on [0, 1] pixels).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# Class names in label order, as in the official `batches.meta`.
CIFAR10_CLASSES = (
    'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
)
CIFAR10_NUM_CLASSES = len(CIFAR10_CLASSES)
CIFAR10_INPUT_SIZE = (3, 32, 32)

# Images per official split (5 training batches of 10,000, one test batch): the sizes every default assumes.
CIFAR10_NUM_TRAIN = 50000
CIFAR10_NUM_TEST = 10000

# Test images 0..1016 are the only test pixels known to be exact in the shared copy (see ../shared/cifar10).
EXACT_TEST_SLICE = slice(0, 1017)
# Training images with exact pixels in the shared copy (prefixes of the official files, see ../shared/cifar10); the
# rest were JPEG-decoded, which every model card states.
EXACT_TRAIN_IMAGES = 8068
