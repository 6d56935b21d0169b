"""Batched attribution: a reader takes the bits of many images in one call per image size, and the registry
(genprint.registry) names the nearest user within each caller's scope. The reader is the ONNX Runtime extractor
(genprint.attribution; the default, for high rates) or, with `reader: inversion`, the inversion reader
(genprint.inversion), which reads far more bits through the decoder at a decoder pass per fitting step."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, defaultdict

import numpy as np

from serving.settings import ServeSettings
from serving.tenancy import fingerprint_id

log = logging.getLogger(__name__)


def answer(a, nbits: int) -> dict:
    """A registry Attribution as the API returns it: the fingerprint id, never the registered or extracted bits."""
    matched = a.user is not None
    return {"attributed": a.attributed, "tenant": a.tenant if matched else None, "user": a.user if matched else None,
            "fingerprint_id": fingerprint_id(a.model_id, a.tenant, a.user) if matched else None, "revoked": a.revoked,
            "distance": a.distance, "p_value": a.p_value, "runner_up_distance": a.runner_up_distance,
            "nbits": nbits, "model_id": a.model_id}


class AttributionEngine:
    def __init__(self, settings: ServeSettings, registry=None):
        from genprint.allocator import keep_freed_memory
        from genprint.registry import Registry
        from genprint.storage import resolve_model

        keep_freed_memory()
        bundle = resolve_model(settings.model)
        if settings.reader == "inversion":
            from genprint.bundle import load_bundle
            from genprint.inversion import InversionReader

            device = settings.torch_device()
            model = load_bundle(bundle, device)
            self.model_id, self.nbits = model.bundle_config["model_id"], model.nbits
            self.read, self.runtime = InversionReader(model, steps=settings.inversion_steps).bits, [f"inversion ({device})"]
        else:
            from genprint.attribution import ExtractorRuntime, bundle_onnx
            from genprint.attribution.runtime import default_threads

            onnx_path, config = bundle_onnx(bundle)
            self.model_id, self.nbits = config["model_id"], config["nbits"]
            runtime = ExtractorRuntime(onnx_path, threads=default_threads())
            self.read, self.runtime = runtime.bits, runtime.providers
        self.registry = registry or Registry(settings.registry_url or None, fpr=settings.fpr)
        self.batches = self.images = 0
        self.largest_batch = 0
        # Moderation streams see the same upload many times; the inversion reader spends seconds on each read.
        self.read_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.read_cache_size, self.cache_hits = settings.read_cache_size, 0

    def info(self) -> dict:
        from genprint.registry import NotFoundError

        try:
            registered = len(self.registry.matcher(self.model_id))
        except NotFoundError:
            registered = 0  # nothing issued for this model yet
        return {"model_id": self.model_id, "nbits": self.nbits, "runtime": self.runtime, "registered": registered,
                "batches": self.batches, "images": self.images, "largest_batch": self.largest_batch,
                "read_cache": {"size": len(self.read_cache), "hits": self.cache_hits}}

    def bits(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, nbits) bits; images of the same size are read together (no resizing: see imageio), each distinct image
        once, and images read before come from the cache. Called by one thread at a time (Serve runs one batch at a
        time per replica; a Ray Data actor one call)."""
        keys = [hashlib.sha256(np.ascontiguousarray(image).tobytes() + repr(image.shape).encode()).digest() for image in images]
        found = {k: self.read_cache[k] for k in set(keys) if k in self.read_cache}
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i in {k: i for i, k in enumerate(keys) if k not in found}.values():
            by_shape[images[i].shape].append(i)
        for rows in by_shape.values():
            found.update(zip((keys[i] for i in rows), self.read(np.stack([images[i] for i in rows]))))
        self.cache_hits += len(keys) - sum(map(len, by_shape.values()))  # answered without a read of their own
        for k in keys:
            self.read_cache[k] = found[k]
            self.read_cache.move_to_end(k)
        while len(self.read_cache) > self.read_cache_size:
            self.read_cache.popitem(last=False)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.nbits), np.uint8)

    def attribute(self, items: list[tuple[np.ndarray, object]]) -> list[dict]:
        """items: (image (3, H, W) float32 in [0, 1], tenant scope or None for all tenants) -> one answer dict each."""
        self.batches += 1
        self.images += len(items)
        self.largest_batch = max(self.largest_batch, len(items))
        bits = self.bits([image for image, _ in items])
        by_scope: dict[object, list[int]] = defaultdict(list)
        for i, (_, scope) in enumerate(items):
            by_scope[scope].append(i)
        results: list[dict | None] = [None] * len(items)
        for scope, rows in by_scope.items():
            for i, a in zip(rows, self.registry.attribute_many(bits[rows], self.model_id, tenant_scope=scope)):
                results[i] = answer(a, self.nbits)
        return results
