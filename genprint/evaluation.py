"""Honest evaluation on photos that training never saw: quality, bits, attribution, false positives.

For each held-out photo (centre crop of `size`) and each of `samples_per_photo` users drawn from
`users` registered fingerprints: decode with the user's fingerprint, compare with the original
decoder, attack, extract, and attribute by the binomial rule at `fpr` against all registered users.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from genprint import evidence
from genprint.attacks import Attack, attack_suite
from genprint.attribution import ESCALATE_P
from genprint.data import LatentBank, load_rgb, resolve_photos, split
from genprint.errors import GenprintError
from genprint.fingerprint import Decision, hamming, p_value, pack, random_fingerprints
from genprint.inversion import MAX_ROTATION
from genprint.inversion import STEPS as INVERSION_STEPS
from genprint.metrics import bit_accuracy, psnr, ssim
from genprint.model import GenprintModel
from genprint.readers import make_reader

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    users: int = 10_000
    fpr: float = 1e-6
    size: int = 256
    samples_per_photo: int = 2
    photos: int | None = None  # None: every held-out photo; else the first N (a slow reader's budget)
    min_distance: int = 0
    holdout: float | None = None  # None: the bundle's training holdout
    batch_size: int = 8
    seed: int = 0
    suites: tuple[str, ...] = ("wouaf", "stable_signature")
    attacks: tuple[str, ...] | None = None  # None: every attack of the suites; else only these names
    reader: str = "cnn"  # cnn, inversion (genprint.inversion) or cascade (genprint.attribution.Attributor)
    inversion_steps: int = INVERSION_STEPS
    escalate_p: float = ESCALATE_P  # the cascade's band: unattributed reads with a corrected p-value at most this
    max_rotation: float = MAX_ROTATION  # the inversion reader's angle search, degrees either way (0: none)


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor | None:
    h, w = image.shape[-2:]
    if min(h, w) < size:
        return None
    top, left = (h - size) // 2, (w - size) // 2
    return image[:, top : top + size, left : left + size]


def held_out_photos(paths: list[Path], holdout: float, size: int, count: int | None = None) -> list[torch.Tensor]:
    """Centre crops of `size` px of the held-out photos (all of `paths` when `holdout` is 0) that are that large; loads
    photos only until `count` are found (None: all)."""
    _, test_paths = split(paths, holdout) if holdout > 0 else (None, paths)
    return list(islice((c for c in (centre_crop(load_rgb(p, 8), size) for p in test_paths) if c is not None), count))


class SimulatedRegistry:
    """Registered fingerprints in memory and the registry's two rules: the binomial Hamming rule on hard bits and soft
    matching of logits (genprint.evidence), at the same false-positive rate per query."""

    def __init__(self, fingerprints: np.ndarray, fpr: float):
        self.bits = fingerprints
        self.words = pack(fingerprints)
        self.nbits = fingerprints.shape[1]
        self.fpr = fpr
        self.decision = Decision(self.nbits, len(fingerprints), fpr)

    def hamming(self, read_bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (best index, distance, attributed) per query."""
        d = hamming(pack(read_bits)[:, None, :], self.words[None])
        best = d.argmin(1)
        dist = d[np.arange(len(best)), best]
        return best, dist, self.decision.attributed(dist)

    def score(self, logits: np.ndarray, users: np.ndarray) -> dict:
        """Bit and attribution accuracy (both rules) of reads of content marked for `users` (indices)."""
        read_bits = (logits > 0).astype(np.uint8)
        best, _, attributed = self.hamming(read_bits)
        soft_best, _, soft_attributed = self.soft(logits)
        return {
            "bit_accuracy": float((read_bits == self.bits[users]).mean()),
            "attribution_accuracy": float((attributed & (best == users)).mean()),
            "false_attributions": int((attributed & (best != users)).sum()),
            "soft_attribution_accuracy": float((soft_attributed & (soft_best == users)).mean()),
            "soft_false_attributions": int((soft_attributed & (soft_best != users)).sum()),
        }

    def false_positives(self, logits: np.ndarray) -> dict:
        """What both rules make of reads of content that carries no fingerprint."""
        _, dist, attributed = self.hamming((logits > 0).astype(np.uint8))
        _, p, soft_attributed = self.soft(logits)
        return {
            "queries": len(logits),
            "attributed": int(attributed.sum()),
            "min_distance": int(dist.min()),
            "soft_attributed": int(soft_attributed.sum()),
            "soft_min_p_value": float(p.min()),
        }

    def soft(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (best index, corrected p-value, attributed) per query."""
        best, p, attributed = [], [], []
        for read in np.atleast_2d(logits):
            s = evidence.scores(self.words, read)
            i = int(s.argmax())
            top, s[i] = s[i], -np.inf
            p_best = float(evidence.corrected(evidence.p_value(read, float(top)), len(self.words)))
            best.append(i), p.append(p_best), attributed.append(p_best <= self.fpr and top > s.max())
        return np.array(best), np.array(p), np.array(attributed)


def held_out_crops(
    model: GenprintModel,
    config,
    samples: int = 128,
    seed: int = 1,
    bits_seed: int | None = None,
    photos=None,
    crop: int | None = None,
):
    """A quick check during training: `samples` latent crops (`crop` px, default the config's first) of the held-out
    photos, and fresh codes."""
    _, held_out = split(resolve_photos(photos), config.holdout)
    crop = crop or config.crops[0]
    latents = LatentBank(model.encode, held_out, model.adapter.downscale, crop, seed=seed).sample(samples)
    gen = torch.Generator().manual_seed(seed if bits_seed is None else bits_seed)
    return latents, torch.randint(0, 2, (samples, config.nbits), generator=gen).float()


def crop_metrics(
    model: GenprintModel, latents: torch.Tensor, bits: torch.Tensor, quality_db=psnr
) -> tuple[float, float]:
    """(bit accuracy, quality against the original decoder in dB: PSNR, or `quality_db` such as SNR for sound) of the
    model in eval mode on these crops."""
    model.eval()
    with torch.no_grad():
        images = model.decode(latents, bits)
        return bit_accuracy(model.extract(images), bits).mean().item(), quality_db(
            images, model.decode_reference(latents)
        ).mean().item()


def read_in_batches(
    read, images: list[torch.Tensor], batch: int, progress: str | None = None, start=None
) -> np.ndarray:
    """Logits of every image, `batch` at a time; `progress` names a bar over the batches (for a slow reader), `start`
    gives the inversion reader earlier logits to start from."""
    from rich.progress import track

    out = []
    with torch.no_grad():
        for i in track(range(0, len(images), batch), description=progress or "", disable=progress is None):
            chunk = images[i : i + batch]
            warm = {} if start is None else {"start_logits": start[i : i + batch]}
            if len({tuple(x.shape) for x in chunk}) == 1:
                out.append(np.asarray(read(torch.stack(chunk), **warm)))
            else:  # attacks can change sizes per image
                out += [
                    np.asarray(read(x[None], **({k: v[j : j + 1] for k, v in warm.items()})))
                    for j, x in enumerate(chunk)
                ]
    return np.concatenate(out).astype(np.float32)


def evaluate(
    model: GenprintModel,
    data: str | Path | None,
    out_dir: str | Path,
    settings: EvalSettings | None = None,
    progress: bool = True,
    calibration: dict | None = None,
) -> dict:
    """Quality, bit accuracy and both rules' attribution, clean and per attack, false positives and plots, written to
    `out_dir`; `calibration` (the bundle's calibration.json) says whether its null vouches for the soft rule's FPR."""
    from rich.progress import track

    from genprint.calibration import status

    settings = settings or EvalSettings()
    options = {"inversion_steps": settings.inversion_steps, "max_rotation": settings.max_rotation}
    cascade = settings.reader == "cascade"
    read = make_reader(model, "cnn" if cascade else settings.reader, **options).logits
    escalate = make_reader(model, "inversion", **options).logits if cascade else None
    attacks: list[Attack] = attack_suite(list(settings.suites))
    if settings.attacks is not None:
        unknown = set(settings.attacks) - {a.name for a in attacks}
        if unknown:
            raise GenprintError(
                f"unknown attacks {sorted(unknown)} in suites {list(settings.suites)}; "
                f"known: {[a.name for a in attacks]}"
            )
        attacks = [a for a in attacks if a.name in settings.attacks]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    holdout = (
        settings.holdout
        if settings.holdout is not None
        else model.bundle_config.get("train", {}).get("holdout", 0.2)
        if hasattr(model, "bundle_config")
        else 0.2
    )
    paths = resolve_photos(data)
    photos = held_out_photos(paths, holdout, settings.size, settings.photos)
    if not photos:
        raise GenprintError(
            f"no held-out photo of at least {settings.size} px among {len(paths)} photos (holdout {holdout})"
        )

    registered = random_fingerprints(settings.users, model.nbits, settings.min_distance, rng=rng)
    attributor = SimulatedRegistry(registered, settings.fpr)
    n = len(photos) * settings.samples_per_photo
    user_idx = rng.choice(settings.users, size=n, replace=False)
    sources = [photos[i // settings.samples_per_photo] for i in range(n)]

    fingerprinted, originals = [], []
    with torch.no_grad():
        for i in track(range(0, n, settings.batch_size), description="decoding", disable=not progress):
            z = model.encode(torch.stack(sources[i : i + settings.batch_size]).to(model._device()))
            # Images stay on the CPU, where attacks (PIL), metrics and plots work; readers move them to the model.
            fingerprinted += list(model.decode(z, registered[user_idx[i : i + settings.batch_size]]).cpu())
            originals += list(model.decode_reference(z).cpu())
    fp, og = torch.stack(fingerprinted), torch.stack(originals)
    quality = {
        "psnr_db": float(psnr(fp, og).mean()),
        "ssim": float(ssim(fp, og).mean()),
        "psnr_db_min": float(psnr(fp, og).min()),
        "ssim_min": float(ssim(fp, og).min()),
    }

    slow = progress and settings.reader != "cnn"
    timing = {"images": 0, "seconds": 0.0, "escalated": 0}

    def read_all(images: list[torch.Tensor], name: str) -> np.ndarray:
        """Logits of every image by the settings' reader; the cascade re-reads, warm-started, what stays unsure."""
        started = time.perf_counter()
        logits = read_in_batches(read, images, settings.batch_size, f"reading {name}" if slow and not cascade else None)
        if cascade:
            _, p, attributed = attributor.soft(logits)
            unsure = np.flatnonzero(~attributed & (p <= settings.escalate_p))
            if len(unsure):
                logits[unsure] = read_in_batches(
                    escalate,
                    [images[i] for i in unsure],
                    settings.batch_size,
                    f"escalating {len(unsure)} of {name}" if slow else None,
                    logits[unsure],
                )
            timing["escalated"] += len(unsure)
        timing["images"] += len(images)
        timing["seconds"] += time.perf_counter() - started
        return logits

    def score(images: list[torch.Tensor], name: str) -> dict:
        return attributor.score(read_all(images, name), user_idx)

    results = {"clean": score(list(fp), "clean")}
    for k, attack in enumerate(track(attacks, description="attacks", disable=not progress)):
        attacked = [attack(img, seed=settings.seed * 1000 + k * 97 + j) for j, img in enumerate(fp)]
        results[attack.name] = {"suite": attack.suite, **score(attacked, attack.name)}

    # False positives: real photos and original-decoder outputs carry no fingerprint.
    negatives = {"photos": photos, "original_decoder": list(og)}
    fpr_report = {name: attributor.false_positives(read_all(images, name)) for name, images in negatives.items()}

    decision = attributor.decision
    single = {k: v for k, v in results.items() if k != "clean" and not v["suite"].endswith("combined")}
    report = {
        "model_id": getattr(model, "bundle_config", {}).get("model_id"),
        "settings": {
            **settings.__dict__,
            "suites": list(settings.suites),
            "attacks": [a.name for a in attacks],
            "holdout": holdout,
        },
        "samples": n,
        "test_photos": len(photos),
        "nbits": model.nbits,
        "decision": {
            "users": settings.users,
            "fpr_per_query": settings.fpr,
            "max_distance": decision.max_distance,
            "min_agreeing_bits": model.nbits - decision.max_distance,
            "p_value_at_threshold": float(p_value(model.nbits - decision.max_distance, model.nbits)),
            "calibration": status(calibration, settings.fpr),
        },
        "quality": quality,
        "quality_summary": f"PSNR {quality['psnr_db']:.2f} dB, SSIM {quality['ssim']:.4f}",
        "results": results,
        "false_positives": fpr_report,
        "single_attacks_below_0.90": sorted(k for k, v in single.items() if v["bit_accuracy"] < 0.90),
        "reading": {
            "reader": settings.reader,
            "seconds_per_image": timing["seconds"] / max(timing["images"], 1),
            "escalated_share": timing["escalated"] / max(timing["images"], 1) if cascade else None,
        },
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_attacks(report, out / "accuracy_per_attack.png")
    plot_grid(og[:4], fp[:4], out / "grid.png")
    return report


def plot_attacks(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    bit = [report["results"][k]["bit_accuracy"] for k in names]
    att = [report["results"][k]["attribution_accuracy"] for k in names]
    soft = [report["results"][k]["soft_attribution_accuracy"] for k in names]
    fig, ax = plt.subplots(figsize=(max(10, len(names) * 0.4), 4.5))
    x = np.arange(len(names))
    ax.bar(x - 0.27, bit, 0.27, label="bit accuracy")
    ax.bar(x, att, 0.27, label="attribution, binomial rule")
    ax.bar(x + 0.27, soft, 0.27, label="attribution, soft rule")
    ax.axhline(0.9, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, names, rotation=75, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"{report['nbits']}-bit fingerprints, {report['decision']['users']} users, "
        f"FPR {report['decision']['fpr_per_query']:g} | {report['quality_summary']}",
        loc="left",
    )
    # above the bars: none hidden
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_grid(originals: torch.Tensor, fingerprinted: torch.Tensor, path: Path, gain: float = 10.0) -> None:
    """Rows: original decoder, fingerprinted, |difference| x gain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(originals)
    fig, axes = plt.subplots(3, k, figsize=(2.6 * k, 8), squeeze=False)
    for j in range(k):
        diff = ((fingerprinted[j] - originals[j]).abs() * gain).clamp(0, 1)
        for i, (img, title) in enumerate(
            [(originals[j], "original decoder"), (fingerprinted[j], "fingerprinted"), (diff, f"|difference| x{gain:g}")]
        ):
            axes[i][j].imshow(img.permute(1, 2, 0).numpy())
            axes[i][j].set_axis_off()
            if j == 0:
                axes[i][j].set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
