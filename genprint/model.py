"""GenprintModel: generator adapter + mapping network + extractor, composed like a diffusers pipeline."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from genprint.errors import GenprintError
from genprint.extractor import Extractor, make_extractor
from genprint.generators import GeneratorAdapter
from genprint.modulation import MappingNetwork, Modulator, bake, select_convs


def default_device() -> str:
    """ "cuda" when torch sees a GPU, else "cpu": where training, evaluation and serving run unless told otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def bits_tensor(bits, device=None) -> torch.Tensor:
    """0/1 bits as a float tensor (B, n); accepts numpy, lists or tensors, 1-D for one user."""
    t = torch.as_tensor(np.asarray(bits, dtype=np.float32) if not torch.is_tensor(bits) else bits, dtype=torch.float32)
    return (t[None] if t.ndim == 1 else t).to(device)


class GenprintModel(nn.Module):
    """The trainable joint model. `forward` runs everything a training step differentiates
    (so one DDP wrapper covers decoder, mapping and extractor); the reference decoder is a
    frozen copy of the original used for quality targets and unfingerprinted output."""

    def __init__(
        self,
        adapter: GeneratorAdapter,
        modulated: list[str],
        mapping: MappingNetwork,
        extractor: Extractor,
        reference: nn.Module | None = None,
    ):
        super().__init__()
        self.adapter = adapter
        self.decoder = adapter.decoder
        self.encoder = adapter.encoder
        self.mapping = mapping
        self.extractor = extractor
        self.modulated = list(modulated)
        self.modulator = Modulator(self.decoder, self.modulated)
        ref = reference if reference is not None else copy.deepcopy(adapter.decoder)
        ref.requires_grad_(False).eval()
        self._reference = [ref]  # kept out of parameters(): never trained, never synced, saved on its own
        if self.encoder is not None:
            self.encoder.requires_grad_(False).eval()
        if extractor.config.get("residual"):
            if self.encoder is None:
                raise GenprintError(
                    "the residual extractor re-renders images through the encoder, "
                    f"and this {adapter.family} generator has none"
                )
            extractor.attach_reference(self.re_render, adapter.downscale)

    @classmethod
    def create(
        cls,
        adapter: GeneratorAdapter,
        nbits: int,
        modulate: list[str] | None = None,
        mapping: dict | None = None,
        extractor: dict | None = None,
    ) -> GenprintModel:
        names = select_convs(adapter.decoder, modulate or adapter.default_modulated)
        modules = dict(adapter.decoder.named_modules())
        mapping_net = MappingNetwork(nbits, [modules[n].in_channels for n in names], **(mapping or {}))
        return cls(adapter, names, mapping_net, make_extractor(nbits, extractor))

    @property
    def nbits(self) -> int:
        return self.mapping.config["nbits"]

    @property
    def reference(self) -> nn.Module:
        return self._reference[0]

    def to(self, *args, **kwargs):
        self._reference[0] = self._reference[0].to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def scales(self, bits) -> list[torch.Tensor]:
        return self.mapping(bits_tensor(bits, self._device()))

    def _device(self):
        return next(self.mapping.parameters()).device

    def decode(
        self,
        latents: torch.Tensor,
        bits=None,
        scales: list[torch.Tensor] | None = None,
        strength: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Latents -> images in [0, 1]; per-sample fingerprints (form a), or the fine-tuned decoder unmodulated when
        both are None. `strength` (B,) reads each sample's code at that fraction: scales 1 + t (s - 1)."""
        self.adapter.check_latents(latents)
        if scales is None and bits is not None:
            scales = self.scales(bits)
        if strength is not None:
            if scales is None:
                raise GenprintError("a code strength needs a code: pass bits or scales with it")
            scales = [1 + strength[:, None].to(s) * (s - 1) for s in scales]
        if scales is None:
            return self.adapter.decode(latents)
        with self.modulator.active(scales):
            return self.adapter.decode(latents)

    def decode_reference(self, latents: torch.Tensor) -> torch.Tensor:
        """The original, unmodified decoder's output: the quality target and the 'no fingerprint' image."""
        self.adapter.check_latents(latents)
        return self.adapter.decode(latents, decoder=self.reference)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.adapter.encode(images)

    def re_render(self, images: torch.Tensor) -> torch.Tensor:
        """Images through the encoder and the original decoder: the residual extractor's reference."""
        return self.adapter.decode(self.encode(images), decoder=self.reference)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Bit logits (B, nbits)."""
        return self.extractor(images)

    def bake(self, bits) -> nn.Module:
        """Form (b): a plain decoder with this one user's fingerprint in its weights."""
        with torch.no_grad():
            scales = [s[0] for s in self.scales(bits_tensor(bits)[:1])]
        return bake(self.decoder, self.modulated, scales)

    def forward(self, latents: torch.Tensor, bits: torch.Tensor, attack=None, strength: torch.Tensor | None = None):
        images = self.decode(latents, bits, strength=strength).float()
        with torch.autocast(images.device.type, enabled=False):  # attacks (JPEG's DCT, resampling) in full precision
            attacked = attack(images) if attack is not None else images
        return images, self.extractor(attacked)
