"""Attribution: images -> a reader's bits -> the registry's answer. The one path the CLI, Serve and the bulk job take.

attributor = Attributor(make_reader(bundle, "cnn"), Registry(url))
answers = attributor.attribute(images, scopes)              # registry Attribution objects, one per image
rows = attribute_files(attributor, paths)                   # image files: one JSON-ready dict each, errors included
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np

from genprint.errors import GenprintError
from genprint.imageio import DEFAULT_MAX_PIXELS, load_image
from genprint.readers import Reader


def fingerprint_id(model_id: str, tenant: str, user: str) -> str:
    """A stable public handle for a user's fingerprint under one model version. It is derived from names only, so it
    reveals nothing of the bits (which never leave the distributor)."""
    return "fp_" + hashlib.sha256(f"{model_id}\0{tenant}\0{user}".encode()).hexdigest()[:20]


def public_answer(a, nbits: int) -> dict:
    """A registry Attribution as services return it: the fingerprint id, never the registered or extracted bits."""
    matched = a.user is not None
    return {
        "attributed": a.attributed,
        "tenant": a.tenant if matched else None,
        "user": a.user if matched else None,
        "fingerprint_id": fingerprint_id(a.model_id, a.tenant, a.user) if matched else None,
        "revoked": a.revoked,
        "distance": a.distance,
        "p_value": a.p_value,
        "runner_up_distance": a.runner_up_distance,
        "nbits": nbits,
        "model_id": a.model_id,
    }


class Attributor:
    """A reader and a registry for one model. Images of the same size are read in one call, each distinct image once,
    and recent reads are kept by content (`read_cache_size`): moderation streams see the same upload many times. One
    caller at a time (Serve runs one batch at a time per replica; a Ray Data actor one call). One reader call holds at
    most `max_read_pixels` pixels, so however many images a batch window gathers, a read's memory stays bounded."""

    def __init__(self, reader: Reader, registry, read_cache_size: int = 4096, max_read_pixels: int = 4096 * 4096):
        self.reader, self.registry, self.max_read_pixels = reader, registry, max_read_pixels
        self.model_id, self.nbits = reader.model_id, reader.nbits
        self.read_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.read_cache_size, self.cache_hits = read_cache_size, 0
        self.batches = self.images = self.largest_batch = 0

    def bits(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, nbits) bits of images (3, H, W) float32 in [0, 1]; no image is resized (see genprint.imageio)."""
        keys = [
            hashlib.sha256(np.ascontiguousarray(image).tobytes() + repr(image.shape).encode()).digest()
            for image in images
        ]
        found = {k: self.read_cache[k] for k in set(keys) if k in self.read_cache}
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i in {k: i for i, k in enumerate(keys) if k not in found}.values():
            by_shape[images[i].shape].append(i)
        for shape, rows in by_shape.items():
            per_read = max(1, self.max_read_pixels // (shape[-1] * shape[-2]))
            for start in range(0, len(rows), per_read):
                chunk = rows[start : start + per_read]
                found.update(zip((keys[i] for i in chunk), self.reader.bits(np.stack([images[i] for i in chunk]))))
        self.cache_hits += len(keys) - sum(map(len, by_shape.values()))  # answered without a read of their own
        for k in keys:
            self.read_cache[k] = found[k]
            self.read_cache.move_to_end(k)
        while len(self.read_cache) > self.read_cache_size:
            self.read_cache.popitem(last=False)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.nbits), np.uint8)

    def attribute(
        self,
        images: list[np.ndarray],
        scopes: list | None = None,
        fpr: float | None = None,
        labels: list[str] | None = None,
    ) -> list:
        """One registry Attribution per image; scopes[i] is image i's tenant scope (None: every tenant), labels go to
        the audit log."""
        self.batches += 1
        self.images += len(images)
        self.largest_batch = max(self.largest_batch, len(images))
        scopes = scopes if scopes is not None else [None] * len(images)
        bits = self.bits(images)
        by_scope: dict[object, list[int]] = defaultdict(list)
        for i, scope in enumerate(scopes):
            by_scope[scope].append(i)
        results: list = [None] * len(images)
        for scope, rows in by_scope.items():
            found = self.registry.attribute_many(
                bits[rows],
                self.model_id,
                tenant_scope=scope,
                fpr=fpr,
                labels=[labels[i] for i in rows] if labels else None,
            )
            for i, answer in zip(rows, found):
                results[i] = answer
        return results

    def info(self) -> dict:
        from genprint.registry import NotFoundError

        try:
            registered = len(self.registry.matcher(self.model_id))
        except NotFoundError:
            registered = 0  # nothing issued for this model yet
        return {
            "model_id": self.model_id,
            "nbits": self.nbits,
            "runtime": self.reader.runtime,
            "registered": registered,
            "batches": self.batches,
            "images": self.images,
            "largest_batch": self.largest_batch,
            "read_cache": {"size": len(self.read_cache), "hits": self.cache_hits},
        }


def attribute_files(
    attributor: Attributor,
    paths: list[str | Path],
    scope=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fpr: float | None = None,
) -> list[dict]:
    """Attribute image files. A bad file gives {"path", "error"} and the others still run.

    Each answer: path, attributed, tenant, user, fingerprint (hex, the registered one), distance, p_value, revoked,
    runner_up_distance, extracted (the hex read from the image)."""
    results: dict[int, dict] = {}
    good, images = [], []
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path, max_pixels=max_pixels).numpy())
            good.append(i)
        except GenprintError as exc:
            results[i] = {"path": str(path), "error": str(exc)}
    if good:
        answers = attributor.attribute(images, [scope] * len(images), fpr=fpr, labels=[str(paths[i]) for i in good])
        for i, a in zip(good, answers):
            results[i] = {
                "path": str(paths[i]),
                "attributed": a.attributed,
                "tenant": a.tenant,
                "user": a.user,
                "fingerprint": a.fingerprint,
                "distance": a.distance,
                "p_value": a.p_value,
                "revoked": a.revoked,
                "runner_up_distance": a.runner_up_distance,
                "extracted": a.query,
            }
    return [results[i] for i in range(len(paths))]
