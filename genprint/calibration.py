"""The null, measured: how the soft rule's corrected p-values fall on images that carry no code of the model.

The soft rule's p-value is exact when the registered codes are random with respect to the read (genprint.evidence),
whatever the reader does. A calibration checks that on real null images (unfingerprinted photos, the original
decoder's output, renders of another fingerprinting model, and attacked versions of each; from the training split
of the photos, so the held-out photos stay unseen for evaluation): for every threshold it
records the share of null queries whose best match among `users` simulated codes would have been attributed. It is
stored beside the bundle (`calibration.json`). With M null queries it vouches for rates down to about 3 / M, and for
none where its queries were attributed more often than the rate allows; a caller asking for less is told, or refused
with `strict`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch

from genprint.errors import GenprintError

log = logging.getLogger(__name__)
FILE = "calibration.json"
THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def null_images(
    model, paths: list[Path], count: int, size: int = 256, seed: int = 0, progress: bool = True
) -> dict[str, list[torch.Tensor]]:
    """`count` null images in three kinds: random crops of the photos at `paths` (flipped at random), the original
    decoder's renders of them, renders of them by another fingerprinting model (a random mapping on the same decoder,
    with random codes); a quarter of each kind attacked (JPEG 50-90, blur, resize, noise)."""
    from rich.progress import track

    from genprint.attacks import attack_suite
    from genprint.data import load_rgb
    from genprint.model import GenprintModel

    rng = np.random.default_rng(seed)
    photos = [p for p in (load_rgb(path, 8) for path in paths) if min(p.shape[-2:]) >= size]
    if not photos:
        raise GenprintError(f"no photo of at least {size} px to calibrate with")
    per_kind = -(-count // 3)
    crops = []
    for _ in range(per_kind):
        photo = photos[rng.integers(len(photos))]
        top = int(rng.integers(0, (photo.shape[1] - size) // 8 + 1)) * 8
        left = int(rng.integers(0, (photo.shape[2] - size) // 8 + 1)) * 8
        crop = photo[:, top : top + size, left : left + size]
        crops.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    adapter = dataclasses.replace(model.adapter, decoder=copy.deepcopy(model.adapter.decoder))
    other = GenprintModel(
        adapter,
        model.modulated,
        type(model.mapping)(**model.mapping.config),
        model.extractor,
        reference=model.reference,
    ).to(model._device())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for affine in other.mapping.affines:
            affine.weight.normal_(0, 0.1, generator=gen)
    kinds: dict[str, list[torch.Tensor]] = {"photos": crops, "original_decoder": [], "another_model": []}
    with torch.no_grad():
        for i in track(range(0, per_kind, 8), description="rendering null images", disable=not progress):
            z = model.encode(torch.stack(crops[i : i + 8]).to(model._device()))
            kinds["original_decoder"] += list(model.decode_reference(z).cpu())
            bits = torch.randint(0, 2, (len(z), model.nbits), generator=gen)
            kinds["another_model"] += list(other.decode(z, bits).cpu())
    edits = [
        a for a in attack_suite(["wouaf", "stable_signature"]) if a.name.startswith(("jpeg", "blur", "resize", "noise"))
    ]
    for kind in list(kinds):
        for j, image in enumerate(kinds[kind][: per_kind // 4]):
            kinds[kind][j] = edits[j % len(edits)](image, seed=seed + j)
    return kinds


def calibrate(
    model, reader, data=None, count: int = 3000, users: int = 10_000, seed: int = 0, progress: bool = True
) -> dict:
    """Read `count` null images with `reader` and record the soft rule's realised false-positive rate at each
    threshold against `users` random codes. The photos are the training split of `data` (the bundle's holdout)."""
    from genprint.data import resolve_photos, split
    from genprint.evaluation import SimulatedRegistry, read_in_batches
    from genprint.fingerprint import random_fingerprints

    train, _ = split(resolve_photos(data), model.bundle_config.get("train", {}).get("holdout", 0.2))
    kinds = null_images(model, train, count, seed=seed, progress=progress)
    registry = SimulatedRegistry(random_fingerprints(users, model.nbits, rng=np.random.default_rng(seed + 1)), 1e-6)
    p_values, counts = [], {}
    for kind, images in kinds.items():
        counts[kind] = len(images)
        logits = read_in_batches(reader.logits, images, 16, f"reading {kind}" if progress else None)
        p_values += list(registry.soft(logits)[1])
    p = np.array(p_values)
    queries = len(p)
    return {
        "model_id": getattr(model, "bundle_config", {}).get("model_id"),
        "reader": reader.runtime,
        "null_queries": queries,
        "kinds": counts,
        "photos": f"{len(train)} photos of the training split",
        "users": users,
        "attributed_at": {f"{t:g}": int((p <= t).sum()) for t in THRESHOLDS},
        "smallest_p_value": float(p.min()),
        "supported_fpr": supported_fpr(p),
    }


def supported_fpr(p_values: np.ndarray) -> float:
    """The smallest threshold t the null queries vouch for: t is at least 3 / M (with M null queries, none attributed
    says the rate is under 3 / M at 95 % confidence, and no finer), and at t and every larger threshold the share of
    null queries attributed is no evidence (one-sided binomial test at 5 %) that the rate exceeds the threshold."""
    from scipy.stats import binom

    queries, floor = len(p_values), 1.0
    for t in np.logspace(-1, -12, 111):  # from 0.1 down, a tenth of a decade at a time
        attributed = int((p_values <= t).sum())
        if t < 3 / queries or binom.sf(attributed - 1, queries, t) < 0.05:
            break
        floor = float(t)
    return floor


def load(bundle: str | Path) -> dict | None:
    path = Path(bundle) / FILE
    return json.loads(path.read_text()) if path.is_file() else None


def status(calibration: dict | None, fpr: float) -> dict | None:
    """What a calibration says of the soft rule at `fpr` (for reports): None without one."""
    if calibration is None:
        return None
    floor = calibration["supported_fpr"]
    return {"null_queries": calibration["null_queries"], "supported_fpr": floor, "vouches_for_fpr": fpr >= floor}


def check_fpr(calibration: dict | None, fpr: float, strict: bool = False, model_id: str | None = None) -> None:
    """Say (or, strict, refuse) when `fpr` is below what the calibration's null queries can vouch for."""
    if calibration is None:
        if strict:
            raise GenprintError("this bundle has no calibration.json: run `genprint calibrate` first")
        return
    floor = calibration["supported_fpr"]
    if model_id is not None and calibration.get("model_id") not in (None, model_id):
        raise GenprintError(
            f"calibration.json was measured on model {calibration['model_id']}, not {model_id}: "
            "run `genprint calibrate` again"
        )
    if fpr >= floor:
        return
    message = (
        f"a false-positive rate of {fpr:g} is below what {calibration['null_queries']} null queries can vouch "
        f"for ({floor:.1g}); below that the threshold rests on the exact null of random codes alone"
    )
    if strict:
        raise GenprintError(message)
    log.warning(message)
