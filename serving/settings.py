"""Serving settings: one pydantic model, filled from `GENPRINT_*` environment variables, then from the Serve config's
application `args` (or `serve run serving.apps:ingress_app key=value`), which win."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from genprint import settings
from genprint.attribution import ESCALATE_P
from genprint.errors import GenprintError
from genprint.inversion import STEPS

ENV_PREFIX = "GENPRINT_"
LISTS = ("moderator_tenants", "image_uri_prefixes")  # comma-separated in the environment


class ServeSettings(BaseModel):
    model_config = {"extra": "forbid"}

    model: str = Field("", description="bundle directory, s3://... or models:/NAME@ALIAS (GENPRINT_MODEL)")
    pipeline: str = Field(
        "tiny",
        description="'tiny' (built offline, untrained), 'photos' (a stand-in whose latents are "
        "encoded photos) or a local / s3:// diffusers folder",
    )
    registry_url: str = Field("", description="registry database URL; empty: the registry's default SQLite file")
    device: str = Field("auto", description="'auto' picks cuda when available")
    image_size: int = Field(
        256, ge=64, le=2048, description="generated image side (multiple of 8 x the UNet's downscale)"
    )
    steps: int = Field(4, ge=1, le=200)
    guidance_scale: float = Field(1.0, ge=0.0, le=30.0, description="classifier-free guidance (<= 1 disables it)")
    max_images_per_request: int = Field(4, ge=1, le=64)
    max_prompt_chars: int = Field(1000, ge=1)
    scale_cache_size: int = Field(4096, ge=1, description="per-replica LRU of per-user scale vectors")
    generation_batch_size: int = Field(16, ge=1, le=256)
    attribution_batch_size: int = Field(16, ge=1, le=256)
    batch_wait_timeout_s: float = Field(0.02, ge=0.0, le=5.0)
    generation_replicas: int = Field(1, ge=1)
    attribution_replicas: int = Field(1, ge=1)
    ingress_replicas: int = Field(1, ge=1)
    max_request_bytes: int = Field(32 << 20, ge=1024, description="largest HTTP request body")
    max_pixels: int = Field(
        4096 * 4096, ge=64 * 64, description="largest image (width x height) accepted for attribution"
    )
    max_request_pixels: int = Field(
        4096 * 4096, ge=64 * 64, description="most decoded pixels one attribution request holds, its images together"
    )
    max_inflight_pixels: int = Field(
        4 * 4096 * 4096, ge=64 * 64, description="decoded pixels an ingress replica holds at once; later requests wait"
    )
    image_uri_prefixes: list[str] = Field(
        default_factory=list,
        description="s3:// prefixes batch attribution may read images from, '{tenant}' standing for the caller's "
        "tenant (empty: no s3:// images; environment: comma-separated)",
    )
    max_batch_images: int = Field(64, ge=1, description="most images in one JSON attribution batch")
    reader: Literal["cnn", "inversion", "cascade"] = Field(
        "cnn",
        description="how attribution reads the bits: 'cnn', the ONNX Runtime / TensorRT extractor (high rate), or "
        "'inversion', the forensic reader that fits each image through the decoder (far more bits, "
        "a decoder pass per step: give its replicas a GPU), or 'cascade': the CNN, and the inversion reader for what "
        "the CNN leaves uncertain",
    )
    inversion_steps: int = Field(STEPS, ge=1, le=2000, description="the inversion reader's fitting steps per image")
    escalate_p: float = Field(
        ESCALATE_P,
        ge=0.0,
        le=1.0,
        description="the cascade reads again what the CNN did not attribute but gave a corrected p-value at most "
        "this; images with no code escalate at this rate",
    )
    read_cache_size: int = Field(
        4096,
        ge=0,
        description="per-replica LRU of read bits by image content: an upload reported "
        "again is matched without being read again (0: off)",
    )
    fpr: float = Field(1e-6, gt=0.0, lt=1.0, description="attribution false-positive rate")
    moderator_tenants: list[str] = Field(
        default_factory=list,
        description="tenants whose keys attribute across all tenants (environment: comma-separated)",
    )

    @classmethod
    def load(cls, args: dict[str, Any] | None = None) -> ServeSettings:
        """Environment first, explicit args over it; a bad value is a GenprintError naming the field."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            env = settings.variable(ENV_PREFIX + name.upper())
            if env is not None:
                values[name] = [v.strip() for v in env.split(",") if v.strip()] if name in LISTS else env
        values.update({k: v for k, v in (args or {}).items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise GenprintError(f"bad serving settings: {problems}") from None

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        from genprint.model import default_device

        return default_device()
