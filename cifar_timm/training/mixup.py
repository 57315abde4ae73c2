"""Label-preserving mixup: the seed-1 (iamVarunAnand) "mixup" that timm's Mixup does not cover.

Spec section 2.4: per sample, lambda ~ Beta(alpha + 1, alpha) with alpha = 0.4, then lambda = max(lambda, 1 - lambda),
so the sample keeps at least half of itself. The image becomes lambda * x_a + (1 - lambda) * x_b and the label is
x_a's alone (labels are not mixed). We reproduce the July-2020 variant behind the 6.90% run: every image is
augmented on its own first (the loader does that), then pairs are mixed inside the batch.

The source takes x_a as a randomly permuted sample and x_b as the sample at the running index; here x_a is the
sample at the running index and x_b a randomly permuted partner. With a uniform random permutation both give the
same distribution of (image, label) pairs, and this way the labels of the batch stay where they are.
"""
from __future__ import annotations

import numpy as np
import torch


class LabelPreservingMixup:
    """Mix each image with a random partner of the same batch, keeping its own label.

    Call with a batch `x` (N, C, H, W) and a numpy Generator (seeded per step by the loop, so a resumed run
    draws the same pairs); returns the mixed batch. Labels are unchanged by construction.
    """

    def __init__(self, alpha: float = 0.4):
        if alpha <= 0:
            raise ValueError(f'label-preserving mixup needs alpha > 0, got {alpha}')
        self.alpha = alpha

    def sample_lambda(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n values of max(lambda, 1 - lambda) with lambda ~ Beta(alpha + 1, alpha), all in [0.5, 1]."""
        lam = rng.beta(self.alpha + 1.0, self.alpha, size=n)
        return np.maximum(lam, 1.0 - lam)

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        n = x.shape[0]
        lam = self.sample_lambda(n, rng)
        partner = rng.permutation(n)
        # One host-to-device copy per step: lambdas and partner indices in one float64 buffer (indices < 2**53 are
        # exact), pinned on CUDA so the copy does not block the host.
        draws = torch.from_numpy(np.concatenate([lam, partner.astype(np.float64)]))
        if x.device.type == 'cuda':
            draws = draws.pin_memory()
        draws = draws.to(x.device, non_blocking=True)
        lam = draws[:n].to(x.dtype).view(n, *([1] * (x.dim() - 1)))
        partner = draws[n:].long()
        return lam * x + (1.0 - lam) * x[partner]
