"""Attribution: images -> a reader's bits -> the registry's answer. The one path the CLI, Serve and the bulk job take.

attributor = Attributor(make_reader(bundle, "cnn"), Registry(url))
answers = attributor.attribute(images, scopes)              # registry Attribution objects, one per image
rows = attribute_files(attributor, paths)                   # files: one JSON-ready dict each, errors included
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
        "rule": a.rule,
        "images": a.images,
        "nbits": nbits,
        "model_id": a.model_id,
    }


# How attribution may read: either reader alone, or the cascade of both.
READERS = ("cnn", "inversion", "cascade")
# The cascade reads again every image whose first read is neither attributed nor this far from it: the corrected
# p-value of an upload with no code of the registry is at least uniform, so about 1 % of unmarked traffic escalates.
ESCALATE_P = 0.01


def check_escalate_p(value: float) -> float:
    """The cascade's band, refused unless it is a probability."""
    if not 0.0 <= value <= 1.0:
        raise GenprintError(f"escalate_p must be a probability between 0 and 1, got {value}")
    return value


def _key(image: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + repr(image.shape).encode()).digest()


class Attributor:
    """A reader and a registry for one model. Images of the same size are read in one call, each distinct image once,
    and recent reads are kept by content (`read_cache_size`): moderation streams see the same upload many times. One
    caller at a time (Serve runs one batch at a time per replica; a Ray Data actor one call). One reader call holds at
    most `max_read_pixels` pixels, so however many images a batch window gathers, a read's memory stays bounded.

    With `escalation` (the cascade), images whose decision is not certain after the first reader (not attributed, and
    a corrected p-value under `escalate_p`) are read again by the escalation reader (the inversion reader), starting
    from the first read's code; their second read decides."""

    def __init__(
        self,
        reader: Reader,
        registry,
        read_cache_size: int = 4096,
        max_read_pixels: int = 4096 * 4096,
        escalation: Reader | None = None,
        escalate_p: float = ESCALATE_P,
    ):
        self.reader, self.registry, self.max_read_pixels = reader, registry, max_read_pixels
        self.escalation, self.escalate_p = escalation, check_escalate_p(escalate_p)
        self.model_id, self.nbits = reader.model_id, reader.nbits
        self.read_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.read_cache_size, self.cache_hits = read_cache_size, 0
        self.batches = self.images = self.largest_batch = self.escalated = 0

    def logits(
        self, images: list[np.ndarray], reader: Reader | None = None, start: np.ndarray | None = None
    ) -> np.ndarray:
        """(N, nbits) logits of images (3, H, W) float32 in [0, 1] by `reader` (default: the first); no image is
        resized (see genprint.imageio). `start`: earlier logits the escalation reader starts from."""
        reader = reader or self.reader
        keys = [(reader is self.reader, _key(image)) for image in images]
        found = {k: self.read_cache[k] for k in set(keys) if k in self.read_cache}
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i in {k: i for i, k in enumerate(keys) if k not in found}.values():
            by_shape[images[i].shape].append(i)
        for shape, rows in by_shape.items():
            per_read = max(1, self.max_read_pixels // (shape[-1] * shape[-2]))
            for first in range(0, len(rows), per_read):
                chunk = rows[first : first + per_read]
                batch = np.stack([images[i] for i in chunk])
                read = reader.logits(batch) if start is None else reader.logits(batch, start_logits=start[chunk])
                found.update(zip((keys[i] for i in chunk), read.astype(np.float32)))
        self.cache_hits += len(keys) - sum(map(len, by_shape.values()))  # answered without a read of their own
        for k in keys:
            self.read_cache[k] = found[k]
            self.read_cache.move_to_end(k)
        while len(self.read_cache) > self.read_cache_size:
            self.read_cache.popitem(last=False)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.nbits), np.float32)

    def attribute(
        self,
        images: list[np.ndarray],
        scopes: list | None = None,
        fpr: float | None = None,
        labels: list[str] | None = None,
    ) -> list:
        """One registry Attribution per image, by soft matching of the read's logits (genprint.evidence); scopes[i] is
        image i's tenant scope (None: every tenant), labels go to the audit log."""
        self.batches += 1
        self.images += len(images)
        self.largest_batch = max(self.largest_batch, len(images))
        scopes = scopes if scopes is not None else [None] * len(images)
        logits = self.logits(images)
        by_scope: dict[object, list[int]] = defaultdict(list)
        for i, scope in enumerate(scopes):
            by_scope[scope].append(i)
        if self.escalation is not None:
            unsure = []
            for scope, rows in by_scope.items():
                first = self.registry.decide(None, self.model_id, scope, fpr, logits=logits[rows])
                unsure += [
                    i
                    for i, a in zip(rows, first)
                    if not a.attributed and a.p_value is not None and a.p_value <= self.escalate_p
                ]
            if unsure:
                self.escalated += len(unsure)
                logits[unsure] = self.logits([images[i] for i in unsure], self.escalation, start=logits[unsure])
        results: list = [None] * len(images)
        for scope, rows in by_scope.items():
            found = self.registry.attribute_many(
                None,
                self.model_id,
                tenant_scope=scope,
                fpr=fpr,
                labels=[labels[i] for i in rows] if labels else None,
                logits=logits[rows],
            )
            for i, answer in zip(rows, found):
                results[i] = answer
        return results

    def attribute_collection(
        self, images: list[np.ndarray], scope=None, fpr: float | None = None, labels: list[str] | None = None
    ):
        """Images believed to come from one source, attributed jointly (Registry.attribute_collection): one answer,
        one query in the audit log."""
        return self.registry.attribute_collection(
            self.logits(images), self.model_id, tenant_scope=scope, fpr=fpr, labels=labels
        )

    def info(self) -> dict:
        from genprint.registry import NotFoundError

        try:
            registered = len(self.registry.matcher(self.model_id))
        except NotFoundError:
            registered = 0  # nothing issued for this model yet
        return {
            "model_id": self.model_id,
            "nbits": self.nbits,
            "runtime": self.reader.runtime + (self.escalation.runtime if self.escalation else []),
            "escalated": self.escalated,
            "registered": registered,
            "batches": self.batches,
            "images": self.images,
            "largest_batch": self.largest_batch,
            "read_cache": {"size": len(self.read_cache), "hits": self.cache_hits},
        }


def load_images(
    paths: list[str | Path], max_pixels: int = DEFAULT_MAX_PIXELS, audio: bool = False
) -> tuple[list, dict[int, str]]:
    """(images, {index: error}) of image files, or with `audio` of sound files (WAV, FLAC: mono (1, T) at genprint's
    rate): a file that is not usable gets its error, the rest load."""
    if audio:
        from genprint.audio.signals import load_audio
    images, errors = [], {}
    for i, path in enumerate(paths):
        try:
            images.append((load_audio(path) if audio else load_image(path, max_pixels=max_pixels)).numpy())
        except GenprintError as exc:
            errors[i] = str(exc)
    return images, errors


def answer_row(path, a) -> dict:
    """A registry Attribution as the CLI prints it: the registered and the extracted code in hex included."""
    return {
        "path": str(path),
        "attributed": a.attributed,
        "tenant": a.tenant,
        "user": a.user,
        "fingerprint": a.fingerprint,
        "distance": a.distance,
        "p_value": a.p_value,
        "revoked": a.revoked,
        "runner_up_distance": a.runner_up_distance,
        "rule": a.rule,
        "images": a.images,
        "extracted": a.query,
    }


def attribute_files(
    attributor: Attributor,
    paths: list[str | Path],
    scope=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fpr: float | None = None,
    audio: bool = False,
) -> list[dict]:
    """Attribute image files (sound files with `audio`). A bad file gives {"path", "error"} and the others still run."""
    images, errors = load_images(paths, max_pixels, audio)
    good = [i for i in range(len(paths)) if i not in errors]
    answers = attributor.attribute(images, [scope] * len(images), fpr=fpr, labels=[str(paths[i]) for i in good])
    results = {i: {"path": str(paths[i]), "error": e} for i, e in errors.items()}
    results.update({i: answer_row(paths[i], a) for i, a in zip(good, answers)})
    return [results[i] for i in range(len(paths))]


def make_attributor(
    bundle,
    kind: str,
    registry,
    *,
    device: str | None = None,
    threads: int | None = None,
    inversion_steps: int | None = None,
    max_rotation: float | None = None,
    **options,
) -> Attributor:
    """The Attributor for a reader kind: cnn, inversion, or cascade (the CNN, and the inversion reader for what it
    leaves uncertain). `options` go to Attributor (read_cache_size, max_read_pixels, escalate_p)."""
    from genprint.readers import make_reader

    inversion = {"device": device, "inversion_steps": inversion_steps, "max_rotation": max_rotation}
    if kind == "cascade":
        return Attributor(
            make_reader(bundle, "cnn", threads=threads),
            registry,
            escalation=make_reader(bundle, "inversion", **inversion),
            **options,
        )
    return Attributor(make_reader(bundle, kind, threads=threads, **inversion), registry, **options)
