"""The fingerprint extractor: a fully convolutional net + global pooling, so any image >= 64 px works."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genprint.errors import GenprintError

MIN_SIZE = 64


class Extractor(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> bit logits (B, nbits).

    `depth` conv-BN-ReLU layers of `width` channels; every second one strides by 2 (up to
    `downsamples` times) so the receptive field covers the fingerprint's texture, then global
    average pooling makes the readout independent of the image size.
    """

    def __init__(self, nbits: int, width: int = 64, depth: int = 6, downsamples: int = 3):
        super().__init__()
        self.config = dict(nbits=nbits, width=width, depth=depth, downsamples=downsamples)
        layers: list[nn.Module] = []
        c_in, strided = 3, 0
        for i in range(depth):
            stride = 2 if (i % 2 == 1 and strided < downsamples) else 1
            strided += stride == 2
            layers += [nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, nbits)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise GenprintError(f"images must have shape (batch, 3, H, W), got {tuple(images.shape)}")
        if min(images.shape[-2:]) < MIN_SIZE:
            raise GenprintError(f"images must be at least {MIN_SIZE} px on each side, got {tuple(images.shape[-2:])}")
        h = self.features(images * 2 - 1)
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))
