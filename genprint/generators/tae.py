"""Tiny AutoEncoder (TAE) family: TAESD-style decoders and encoders, including TAEF2's pooled blocks.

The module layout mirrors the state-dict keys of the released checkpoints (`nn.Sequential`
indices), so weights load with `load_state_dict` and nothing is renamed.
"""

from __future__ import annotations

import torch
from torch import nn


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convs with ReLU between, identity skip; optional `x + pool(x)` channel mixer first."""

    def __init__(self, n: int, pooled: bool = False, pool_width: int = 256, pool_groups: int = 4):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.pool = (
            nn.Sequential(
                nn.Conv2d(n, pool_width, 1, bias=False),
                nn.GroupNorm(pool_groups, pool_width),
                nn.ReLU(),
                nn.Conv2d(pool_width, n, 1, bias=False),
            )
            if pooled
            else None
        )
        self.fuse = nn.ReLU()

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def tae_decoder(
    latent_channels: int = 32, width: int = 64, pooled_first_stage: bool = True, out_channels: int = 3
) -> nn.Sequential:
    """latent (B, C, h, w) -> image (B, 3, 8h, 8w), roughly in [0, 1]."""
    p = pooled_first_stage
    return nn.Sequential(
        Clamp(),
        conv(latent_channels, width),
        nn.ReLU(),
        Block(width, p),
        Block(width, p),
        Block(width, p),
        nn.Upsample(scale_factor=2),
        conv(width, width, bias=False),
        Block(width),
        Block(width),
        Block(width),
        nn.Upsample(scale_factor=2),
        conv(width, width, bias=False),
        Block(width),
        Block(width),
        Block(width),
        nn.Upsample(scale_factor=2),
        conv(width, width, bias=False),
        Block(width),
        conv(width, out_channels),
    )


def tae_encoder(
    latent_channels: int = 32, width: int = 64, pooled_last_stage: bool = True, in_channels: int = 3
) -> nn.Sequential:
    """image (B, 3, H, W) in [0, 1] -> latent (B, C, H/8, W/8)."""
    p = pooled_last_stage
    return nn.Sequential(
        conv(in_channels, width),
        Block(width),
        conv(width, width, stride=2, bias=False),
        Block(width),
        Block(width),
        Block(width),
        conv(width, width, stride=2, bias=False),
        Block(width),
        Block(width),
        Block(width),
        conv(width, width, stride=2, bias=False),
        Block(width, p),
        Block(width, p),
        Block(width, p),
        conv(width, latent_channels),
    )
