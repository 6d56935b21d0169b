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

    decoder: latent (B, C, h, w) -> image in the family's native range (`output_range`).
    encoder: image in [0, 1] -> latent, or None when the source has no encoder.
    spec: JSON-serialisable description that `build_adapter` turns back into empty modules.
    Audio families (`modality` "audio") decode latents (B, C, t) to waveforms (B, 1, T) in `signal_range` [-1, 1].
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
    signal_range: tuple[float, float] = (0.0, 1.0)  # genprint's range of the output: images [0, 1], sound [-1, 1]
    modality: str = "image"

    def _rescale(self, x: torch.Tensor, source: tuple[float, float], target: tuple[float, float]) -> torch.Tensor:
        if source == target:
            return x
        return (x - source[0]) / (source[1] - source[0]) * (target[1] - target[0]) + target[0]

    def decode(self, latents: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        out = self._rescale((decoder or self.decoder)(latents), self.output_range, self.signal_range)
        return out.clamp(*self.signal_range)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            raise GenprintError(
                f"the {self.family} generator in this bundle has no encoder; pass latents instead of images"
            )
        return self.encoder(self._rescale(images, self.signal_range, self.input_range))

    def check_latents(self, latents: torch.Tensor) -> None:
        ndim = 3 if self.modality == "audio" else 4
        if latents.ndim != ndim or latents.shape[1] != self.latent_channels:
            layout = "t" if ndim == 3 else "h, w"
            raise GenprintError(
                f"latents must have shape (batch, {self.latent_channels}, {layout}) for this {self.family} decoder, "
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
    load: Callable[[Path | None, dict], GeneratorAdapter]  # local source path, config's spec -> adapter with weights
    export: Callable[[GeneratorAdapter, nn.Module, Path], Path]
    read: Callable[[GeneratorAdapter, Path], dict]  # an export's decoder weights (genprint.weights reads leaks)


FAMILIES: dict[str, Family] = {}


def build_adapter(spec: dict) -> GeneratorAdapter:
    family = spec.get("family")
    if family not in FAMILIES:
        raise GenprintError(f"unknown generator family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family].build(spec)


def load_adapter_source(family: str, source: str | Path | None, spec: dict | None = None) -> GeneratorAdapter:
    """Load pretrained weights from a local path (no hub): the start of a training run. `spec` (a config's
    `generator` section) shapes families built from a spec, such as wavae."""
    if family not in FAMILIES:
        raise GenprintError(f"unknown generator family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family].load(Path(source) if source else None, dict(spec or {}))


def _register() -> None:
    from genprint.generators import diffusers_vae, taef2, wavae  # noqa: F401  (each registers itself)


_register()
