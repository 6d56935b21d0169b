"""The adapter contract and the registry of generator families."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genprint.errors import GenprintError


@dataclass
class GeneratorAdapter:
    """A latent autoencoder seen the way genprint needs it.

    decoder: latent (B, C, h, w) -> image in the family's native range (see `to_unit`).
    encoder: image in [0, 1] -> latent, or None when the source has no encoder.
    spec: JSON-serialisable description that `build_adapter` turns back into empty modules.
    """

    family: str
    spec: dict[str, Any]
    decoder: nn.Module
    encoder: nn.Module | None
    latent_channels: int
    downscale: int = 8
    default_modulated: list[str] = field(default_factory=list)
    output_range: tuple[float, float] = (0.0, 1.0)
    input_range: tuple[float, float] = (0.0, 1.0)

    def decode(self, latents: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        lo, hi = self.output_range
        out = (decoder or self.decoder)(latents)
        return ((out - lo) / (hi - lo)).clamp(0, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            raise GenprintError(
                f"the {self.family} generator in this bundle has no encoder; pass latents instead of images"
            )
        lo, hi = self.input_range
        return self.encoder(images * (hi - lo) + lo)

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise GenprintError(
                f"latents must have shape (batch, {self.latent_channels}, h, w) for this {self.family} decoder, "
                f"got {tuple(latents.shape)}"
            )

    def export_native(self, decoder: nn.Module, out_dir: Path) -> Path:
        """Write `decoder` (a baked, plain decoder) in the family's own format; returns the main file or folder."""
        return FAMILIES[self.family].export(self, decoder, Path(out_dir))

    def copy_decoder(self) -> nn.Module:
        return copy.deepcopy(self.decoder)


@dataclass
class Family:
    build: Callable[[dict], GeneratorAdapter]  # spec -> adapter with freshly initialised modules
    load: Callable[[Path], GeneratorAdapter]  # local source path -> adapter with its weights
    export: Callable[[GeneratorAdapter, nn.Module, Path], Path]
    read: Callable[[GeneratorAdapter, Path], dict]  # an export's decoder weights (genprint.weights reads leaks)


FAMILIES: dict[str, Family] = {}


def build_adapter(spec: dict) -> GeneratorAdapter:
    family = spec.get("family")
    if family not in FAMILIES:
        raise GenprintError(f"unknown generator family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family].build(spec)


def load_adapter_source(family: str, source: str | Path | None) -> GeneratorAdapter:
    """Load pretrained weights from a local path (no hub): the start of a training run."""
    if family not in FAMILIES:
        raise GenprintError(f"unknown generator family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family].load(Path(source) if source else None)


def _register() -> None:
    from genprint.generators import diffusers_vae, taef2  # noqa: F401  (each registers itself)


_register()
