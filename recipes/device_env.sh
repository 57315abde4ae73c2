# Source this at the start of every call on a lent GPU machine, from the repository root:
#     source recipes/device_env.sh && python3 recipes/launch_many.py ...
# The machine has torch, timm, accelerate, but no internet and no pip install of this project. This puts the
# checkout on PYTHONPATH, installs the wheels carried in .device_carry/wheels (airbench; timm when the machine's is
# older than this project needs), builds CIFAR-10 from the carried .device_carry/cifar10 once, and prints what
# runs: a GPU session should not spend minutes on a version mismatch found halfway.
# Sets CIFAR10_DIR (the folder holding cifar-10-batches-py). Returns non-zero, and says why, on any problem.

export PYTHONUNBUFFERED=1
CIFAR_TIMM_CARRY="${CIFAR_TIMM_CARRY:-.device_carry}"
CIFAR_TIMM_SITE="${CIFAR_TIMM_SITE:-/tmp/cifar-timm-site}"
CIFAR10_DIR="${CIFAR10_DIR:-data/cifar10}"
export CIFAR10_DIR

if [ ! -f cifar_timm/__init__.py ]; then
    echo "device_env: run from the repository root (no cifar_timm/ in $PWD)" >&2
    return 1 2>/dev/null || exit 1
fi

# Carried wheels go first on the path, so a carried timm wins over the machine's own.
case ":${PYTHONPATH:-}:" in *":$PWD:"*) ;; *) export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ;; esac
if compgen -G "$CIFAR_TIMM_CARRY/wheels/*.whl" >/dev/null; then
    if [ ! -f "$CIFAR_TIMM_SITE/.installed" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$CIFAR_TIMM_SITE" "$CIFAR_TIMM_CARRY"/wheels/*.whl || {
            echo "device_env: installing $CIFAR_TIMM_CARRY/wheels/*.whl failed" >&2; return 1 2>/dev/null || exit 1; }
        touch "$CIFAR_TIMM_SITE/.installed"
    fi
    case ":$PYTHONPATH:" in *":$CIFAR_TIMM_SITE:"*) ;; *) export PYTHONPATH="$CIFAR_TIMM_SITE:$PYTHONPATH" ;; esac
fi

if [ ! -f "$CIFAR10_DIR/cifar-10-batches-py/test_batch" ]; then
    if [ ! -f "$CIFAR_TIMM_CARRY/cifar10/build.py" ]; then
        echo "device_env: no dataset at $CIFAR10_DIR and nothing to build it from: copy ../shared/cifar10 to" \
             "$CIFAR_TIMM_CARRY/cifar10 here and name $CIFAR_TIMM_CARRY in the call's carry" >&2
        return 1 2>/dev/null || exit 1
    fi
    python3 "$CIFAR_TIMM_CARRY/cifar10/build.py" "$CIFAR10_DIR" >/dev/null || {
        echo "device_env: building CIFAR-10 into $CIFAR10_DIR failed" >&2; return 1 2>/dev/null || exit 1; }
fi

# The import registers every model: an incompatible timm or torch fails here, not inside a training run.
python3 - <<'EOF' || { echo "device_env: cifar_timm does not import with these versions" >&2; return 1 2>/dev/null || exit 1; }
import platform, accelerate, timm, cifar_timm
from cifar_timm.commands._options import resolve_device
from cifar_timm.commands.bench import format_machine, machine_info
print(f'device_env: {format_machine(machine_info(resolve_device(None)))}, Python {platform.python_version()}, '
      f'timm {timm.__version__} from {timm.__file__.rsplit("/", 2)[0]}, accelerate {accelerate.__version__}, '
      f'cifar_timm {len(cifar_timm.list_models())} models')
EOF
