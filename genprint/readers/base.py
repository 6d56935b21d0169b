"""The Reader interface: what every reader provides, whatever runs it."""

from __future__ import annotations

import numpy as np


class Reader:
    """images (B, 3, H, W) float32 in [0, 1] (numpy or torch; one (3, H, W) image is a batch of one) -> per-bit logits.

    A reader implements `logits`; `probabilities` and `bits` follow from it. `nbits` is the code length, `model_id`
    the bundle it reads for, `runtime` says what runs it (for logs and /v1/info)."""

    nbits: int
    model_id: str
    runtime: list[str]

    def logits(self, images) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, images) -> np.ndarray:
        """P(bit = 1) per bit, (B, nbits) float32."""
        return (1 / (1 + np.exp(-self.logits(images).astype(np.float64)))).astype(np.float32)

    def bits(self, images) -> np.ndarray:
        """Hard 0/1 bits, (B, nbits) uint8."""
        return (self.logits(images) > 0).astype(np.uint8)
