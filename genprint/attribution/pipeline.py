"""Image files -> extracted bits -> registry answer, one JSON-ready dict per image."""

from __future__ import annotations

from pathlib import Path

from genprint.errors import GenprintError
from genprint.imageio import DEFAULT_MAX_PIXELS, load_image


def attribute_images(registry, runtime, model_id: str, paths: list[str | Path], tenant_scope=None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, fpr: float | None = None) -> list[dict]:
    """Attribute each image file. A bad image gives {"path", "error"} and the others still run.

    Each answer: path, attributed, tenant, user, fingerprint (hex, the registered one), distance, p_value,
    revoked, runner_up_distance, extracted (the hex read from the image)."""
    results: dict[int, dict] = {}
    good, bits = [], []
    for i, path in enumerate(paths):
        try:
            image = load_image(path, max_pixels=max_pixels)
            bits.append(runtime.bits(image)[0])
            good.append(i)
        except GenprintError as exc:
            results[i] = {"path": str(path), "error": str(exc)}
    if good:
        answers = registry.attribute_many(bits, model_id, tenant_scope=tenant_scope, fpr=fpr, labels=[str(paths[i]) for i in good])
        for i, a in zip(good, answers):
            results[i] = {"path": str(paths[i]), "attributed": a.attributed, "tenant": a.tenant, "user": a.user,
                          "fingerprint": a.fingerprint, "distance": a.distance, "p_value": a.p_value, "revoked": a.revoked,
                          "runner_up_distance": a.runner_up_distance, "extracted": a.query}
    return [results[i] for i in range(len(paths))]
