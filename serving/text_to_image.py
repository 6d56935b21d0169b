"""Where the text-to-image pipeline comes from: the offline tiny default, photos, a local diffusers folder, or an
s3:// folder.

Whatever the source, the pipeline only produces latents: the pipeline's own VAE (if any) is never run, and the
fingerprinted decoder of the genprint bundle must work in the same latent space (checked here).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from genprint.errors import GenprintError


@dataclass
class LatentPipeline:
    pipe: object  # a diffusers text-to-image pipeline
    scaling_factor: float  # the pipeline's latents are (raw - shift) * scaling_factor
    shift_factor: float
    source: str

    def to_raw(self, latents):
        """Pipeline latents -> the decoder's raw latent space."""
        return latents / self.scaling_factor + self.shift_factor


class PhotoPipeline:
    """A stand-in for a text-to-image model, where none can be had offline: each (prompt, seed) picks one of the
    photos (the shared ones, training photos included, else scikit-image's), resized and centre-cropped to the
    requested size, and its latents are the bundle's encoder's. The untrained `tiny` pipeline makes textures unlike any
    photo; encoded photos are what `genprint eval` reads fingerprints from. Called like a diffusers pipeline with
    `output_type="latent"`; steps and guidance are ignored."""

    def __init__(self, adapter, photos: list[Path]):
        if adapter.encoder is None:
            raise GenprintError(
                f"the 'photos' pipeline encodes photos, and this {adapter.family} generator has no encoder"
            )
        if not photos:
            raise GenprintError("the 'photos' pipeline found no photos")
        self.adapter, self.photos = adapter, sorted(photos)

    def __call__(self, prompts: list[str], height: int, width: int, generator: list, output_type: str = "latent", **_):
        import torch

        m = self.adapter.downscale
        if output_type != "latent":
            raise GenprintError(f"the 'photos' pipeline makes latents only, not output_type {output_type!r}")
        if height % m or width % m:
            raise GenprintError(f"image sides must be multiples of {m}, got {height}x{width}")
        images = []
        for prompt, gen in zip(prompts, generator):
            # The prompt and the seed's generator pick the photo: the same request always gets the same one.
            salt = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
            pick = (salt + int(torch.randint(len(self.photos), (1,), generator=gen, device=gen.device))) % len(
                self.photos
            )
            images.append(self.fitted(self.photos[pick], width, height))
        device = generator[0].device if generator else "cpu"
        return SimpleNamespace(images=self.adapter.encode(torch.stack(images).to(device)))

    @staticmethod
    def fitted(path: Path, width: int, height: int):
        """The photo at `path`, resized and centre-cropped to width x height: a float tensor (3, H, W) in [0, 1]."""
        import numpy as np
        import torch
        from PIL import Image, ImageOps

        with Image.open(path) as photo:
            image = ImageOps.fit(
                ImageOps.exif_transpose(photo).convert("RGB"), (width, height), Image.Resampling.LANCZOS
            )
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def load_pipeline(source: str, adapter, device: str = "cpu") -> LatentPipeline:
    """`source`: 'tiny', 'photos', a local diffusers folder, or s3://bucket/prefix of one."""
    if source == "photos":
        from genprint.data import resolve_photos

        return LatentPipeline(PhotoPipeline(adapter, resolve_photos(None)), 1.0, 0.0, source)
    if source in ("", "tiny"):
        from serving.tiny_sd import tiny_pipeline

        pipe, scaling, shift = tiny_pipeline(latent_channels=adapter.latent_channels), 1.0, 0.0
    else:
        from diffusers import DiffusionPipeline

        from genprint.settings import cache_dir
        from genprint.storage import mirror_folder

        folder = mirror_folder(source, cache_dir() / "pipelines") if source.startswith("s3://") else Path(source)
        if not (folder / "model_index.json").is_file():
            raise GenprintError(f"{source} is not a diffusers pipeline folder (no model_index.json)")
        try:
            pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, safety_checker=None)
        except Exception as exc:  # diffusers raises many types for a bad folder
            raise GenprintError(f"cannot load a diffusers pipeline from {source}: {str(exc).splitlines()[0]}") from None
        vae_config = getattr(getattr(pipe, "vae", None), "config", None)
        scaling = float(getattr(vae_config, "scaling_factor", None) or 1.0)
        shift = float(getattr(vae_config, "shift_factor", None) or 0.0)
        pipe.set_progress_bar_config(disable=True)
    channels = pipe.unet.config.out_channels if hasattr(pipe, "unet") else pipe.transformer.config.out_channels
    if channels != adapter.latent_channels:
        raise GenprintError(
            f"the pipeline {source!r} makes {channels}-channel latents but the bundle's {adapter.family} decoder "
            f"takes {adapter.latent_channels}: use a bundle trained on that pipeline's autoencoder"
        )
    return LatentPipeline(pipe.to(device), scaling, shift, source or "tiny")
