"""Small functions run as torch.compile'd kernels where that is possible, and as themselves everywhere else.

Some elementwise steps cost far more in eager PyTorch on CPU than their arithmetic (ATen's mish); compiled, each
is one fused pass. Use it for forward-only kernels (inside an autograd.Function with its own backward): a kernel
compiled with autograd asserts the layout of the gradient it is given, and a different one crashed a run.
The kernel is a runtime choice, never part of a model: under TorchScript, fx tracing or a whole-model
torch.compile (which fuses the eager function itself), after a failed compile (no C++ compiler, no Triton), or
with CIFAR_TIMM_COMPILED_LAYERS=0, the eager function runs, so a model computes the same function everywhere.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Optional

import torch

ENV_SWITCH = 'CIFAR_TIMM_COMPILED_LAYERS'


def compiled_layers_enabled() -> bool:
    return os.environ.get(ENV_SWITCH, '1') != '0'


class CompiledFunction:
    """`kernel` compiled on first call (dynamic shapes: one compile per dtype and layout, not per batch size);
    `eager` (the same function, possibly written differently) wherever the kernel cannot run."""

    def __init__(self, kernel: Callable[..., torch.Tensor], eager: Optional[Callable[..., torch.Tensor]] = None):
        self.kernel = kernel
        self.eager = eager or kernel
        self._compiled: Optional[Callable[..., torch.Tensor]] = None
        self._failed = False
        self._worked = False

    @property
    def usable(self) -> bool:
        """Whether the compiled kernel may run now (not inside a trace, a script or an outer compile)."""
        return (not self._failed and compiled_layers_enabled() and not torch.compiler.is_compiling()
                and not torch.jit.is_tracing())

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if not self.usable:
            return self.eager(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.kernel, dynamic=True)
        try:
            result = self._compiled(*args)
        except Exception as e:
            if not _is_compile_failure(e, first_call=not self._worked):
                raise
            self._failed = True
            warnings.warn(
                f'{getattr(self.kernel, "__name__", "a layer")} could not be compiled ({type(e).__name__}: {e}); '
                f'using the eager version, which is slower. torch.compile needs a C++ compiler on CPU and Triton on '
                f'GPU; set {ENV_SWITCH}=0 to skip the attempt', RuntimeWarning, stacklevel=2)
            return self.eager(*args)
        self._worked = True
        return result


def _is_compile_failure(error: Exception, first_call: bool) -> bool:
    """A backend failure (no compiler, no Triton) at any call, or anything at the first call, except the control
    flow exceptions that pass through layers (non-reentrant checkpointing stops its recomputation by raising)."""
    from torch._dynamo.exc import BackendCompilerFailed
    import torch.utils.checkpoint
    if isinstance(error, getattr(torch.utils.checkpoint, '_StopRecomputationError', ())):
        return False
    return first_call or isinstance(error, BackendCompilerFailed)
