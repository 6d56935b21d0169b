"""The attribution service's engine: the core Attributor (genprint.attribution) built from the Serve settings.

The reader is the ONNX Runtime extractor (the default, for high rates), with `reader: inversion` the inversion reader,
which reads far more bits through the decoder at a decoder pass per fitting step, or with `reader: cascade` the first
and, for what it leaves uncertain, the second."""

from __future__ import annotations

import threading

from genprint.attribution import make_attributor, public_answer
from serving.settings import ServeSettings


class AttributionEngine:
    def __init__(self, settings: ServeSettings, registry=None):
        from genprint.allocator import keep_freed_memory
        from genprint.registry import Registry
        from pipelines.tracking import resolve_model

        keep_freed_memory()
        self.attributor = make_attributor(
            resolve_model(settings.model),
            settings.reader,
            registry or Registry(settings.registry_url or None, fpr=settings.fpr),
            device=settings.torch_device(),
            inversion_steps=settings.inversion_steps,
            escalate_p=settings.escalate_p,
            read_cache_size=settings.read_cache_size,
            max_read_pixels=settings.max_request_pixels,
        )
        self.model_id, self.nbits = self.attributor.model_id, self.attributor.nbits
        self.registry = self.attributor.registry
        # The batched route and the collection route run on threads of their own; the attributor (its read cache, the
        # decoder's modulation state) takes one caller at a time.
        self.lock = threading.Lock()

    def info(self) -> dict:
        with self.lock:
            return self.attributor.info()

    def attribute(self, items: list[tuple]) -> list[dict]:
        """items: (image (3, H, W) float32 in [0, 1], tenant scope or None for all tenants) -> one answer dict each."""
        with self.lock:
            answers = self.attributor.attribute([image for image, _ in items], [scope for _, scope in items])
        return [public_answer(a, self.nbits) for a in answers]

    def attribute_collection(self, images: list, scope) -> dict:
        """Images believed to come from one source -> one joint answer (genprint.attribution)."""
        with self.lock:
            return public_answer(self.attributor.attribute_collection(images, scope), self.nbits)
