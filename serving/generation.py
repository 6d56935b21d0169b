"""Fingerprinted text-to-image generation: the pipeline makes latents for a whole batch of requests (any mix of users),
then the genprint decoder turns them into pixels in ONE forward pass with per-sample modulation. Weights are never
swapped and no per-user model copy exists; a user costs one cached set of scale vectors."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from serving.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class GenerationJob:
    """One image for one user. The fingerprint (hex) travels inside the cluster only; responses carry its id."""

    prompt: str
    seed: int
    fingerprint_id: str
    fingerprint_hex: str


@dataclass
class GenerationFailed:
    """One job that failed on its own (its batch's other jobs were generated): the ingress answers it with 422."""

    message: str


@dataclass
class GeneratedImage:
    png: bytes
    seed: int
    fingerprint_id: str
    model_id: str
    seconds: float


def to_png(image: torch.Tensor) -> bytes:
    """(3, H, W) in [0, 1] -> PNG bytes (uint8, rounded)."""
    array = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class GenerationEngine:
    def __init__(self, settings: ServeSettings):
        from genprint.allocator import keep_freed_memory
        from genprint.bundle import load_bundle
        from pipelines.tracking import resolve_model
        from serving.scale_cache import ScaleCache
        from serving.text_to_image import load_pipeline

        keep_freed_memory()
        self.settings = settings
        self.device = settings.torch_device()
        self.model = load_bundle(resolve_model(settings.model), self.device)
        self.model_id = self.model.bundle_config["model_id"]
        self.pipeline = load_pipeline(settings.pipeline, self.model.adapter, self.device)
        self.scales = ScaleCache(self.model, settings.scale_cache_size)
        self.batches = self.images = self.largest_batch = 0

    def info(self) -> dict:
        return {
            "model_id": self.model_id,
            "nbits": self.model.nbits,
            "pipeline": self.pipeline.source,
            "image_size": self.settings.image_size,
            "steps": self.settings.steps,
            "batches": self.batches,
            "images": self.images,
            "largest_batch": self.largest_batch,
            "scale_cache": {"size": len(self.scales), "hits": self.scales.hits, "misses": self.scales.misses},
        }

    @torch.inference_mode()
    def latents(self, jobs: list[GenerationJob]) -> torch.Tensor:
        """Raw decoder latents, one per job; each job's noise comes from its own seed, so a job's latents do not
        depend on what else is in the batch."""
        size = self.settings.image_size
        generators = [torch.Generator(self.device).manual_seed(job.seed) for job in jobs]
        out = self.pipeline.pipe(
            [job.prompt for job in jobs],
            height=size,
            width=size,
            num_inference_steps=self.settings.steps,
            guidance_scale=self.settings.guidance_scale,
            generator=generators,
            output_type="latent",
        )
        return self.pipeline.to_raw(out.images)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, jobs: list[GenerationJob]) -> torch.Tensor:
        """One forward pass for the whole batch, each sample with its own user's scales."""
        scales = self.scales.batch([(job.fingerprint_id, job.fingerprint_hex) for job in jobs])
        return self.model.decode(latents.to(self.device), scales=[s.to(self.device) for s in scales])

    def generate(self, jobs: list[GenerationJob]) -> list[GeneratedImage]:
        self.batches += 1
        self.images += len(jobs)
        self.largest_batch = max(self.largest_batch, len(jobs))
        start = time.perf_counter()
        images = self.decode(self.latents(jobs), jobs)
        seconds = time.perf_counter() - start
        log.debug(
            "generated %d images for %d users in %.3fs", len(jobs), len({j.fingerprint_id for j in jobs}), seconds
        )
        return [
            GeneratedImage(to_png(img), job.seed, job.fingerprint_id, self.model_id, seconds)
            for img, job in zip(images, jobs)
        ]

    def generate_each(self, jobs: list[GenerationJob]) -> list[GeneratedImage | GenerationFailed]:
        """The batch in one pass; when that fails, each job alone, so a request that breaks generation (a prompt the
        tokenizer refuses) fails by itself and the requests batched with it still succeed."""
        try:
            return self.generate(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                log.warning("generation failed: %s", exc)
                return [GenerationFailed(f"generation failed for this request: {str(exc).splitlines()[0][:300]}")]
        return [result for job in jobs for result in self.generate_each([job])]
