"""Audio evaluation: quality against the original decoder (SNR, PESQ, STOI), bit and attribution accuracy clean and
under every attack of the audio suite, false positives; the same simulated registry and rules as images."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from genprint.audio import HELD_OUT_SECONDS, RATE
from genprint.audio.attacks import attack_suite
from genprint.audio.data import held_out_sources
from genprint.audio.extractor import MIN_SAMPLES
from genprint.audio.quality import mean_finite, perceptual, snr
from genprint.errors import GenprintError
from genprint.evaluation import SimulatedRegistry, plot_attacks
from genprint.fingerprint import random_fingerprints
from genprint.readers.torch_extractor import TorchExtractorReader

PERCEPTUAL_CLIPS = 16  # PESQ and STOI cost about a second a clip: measured on the first 16


def evaluate_audio(
    model,
    data: str | Path | None,
    out_dir: str | Path,
    users: int = 10_000,
    fpr: float = 1e-6,
    clips: int | None = 64,
    attacks: tuple[str, ...] | None = None,
    seed: int = 0,
    seconds: float = HELD_OUT_SECONDS,
) -> dict:
    """The report of `genprint eval` for an audio bundle: the first `seconds` of the first `clips` held-out clips that
    last that long, each rendered for a random registered user, read clean and under each attack."""
    if seconds * RATE < MIN_SAMPLES:
        raise GenprintError(f"--seconds must be at least {MIN_SAMPLES / RATE:g} (the reader's shortest clip)")
    suite = attack_suite()
    if attacks is not None:
        if unknown := set(attacks) - set(suite):
            raise GenprintError(f"unknown audio attacks {sorted(unknown)}; known: {sorted(suite)}")
        suite = {k: v for k, v in suite.items() if k in attacks}
    sources = held_out_sources(data, seconds, model.adapter.downscale, clips or 64)
    rng = np.random.default_rng(seed)
    registered = random_fingerprints(users, model.nbits, rng=rng)
    registry = SimulatedRegistry(registered, fpr)
    user_idx = rng.choice(users, size=len(sources), replace=False)
    with torch.no_grad():
        z = model.encode(sources.to(model._device()))
        fp = model.decode(z, registered[user_idx]).cpu()
        og = model.decode_reference(z).cpu()
    heard = [perceptual(fp[i], og[i]) for i in range(min(PERCEPTUAL_CLIPS, len(fp)))]
    quality = {
        "snr_db": float(snr(fp, og).mean()),
        "snr_db_min": float(snr(fp, og).min()),
        "pesq": mean_finite(h["pesq"] for h in heard),
        "stoi": mean_finite(h["stoi"] for h in heard),
        "original_decoder_snr_db": float(snr(og, sources).mean()),  # the codec's own fidelity, for scale
    }
    reader = TorchExtractorReader(model)
    timing = {"clips": 0, "seconds": 0.0}

    def read(waves: torch.Tensor) -> np.ndarray:
        started = time.perf_counter()
        logits = np.concatenate([reader.logits(waves[i : i + 16]) for i in range(0, len(waves), 16)])
        timing["clips"] += len(waves)
        timing["seconds"] += time.perf_counter() - started
        return logits

    results = {"clean": {"suite": "audio", **registry.score(read(fp), user_idx)}}
    for name, attack in suite.items():
        results[name] = {"suite": "audio", **registry.score(read(attack(fp)), user_idx)}
    unmarked = {"speech": sources, "original_decoder": og}
    false_positives = {name: registry.false_positives(read(waves)) for name, waves in unmarked.items()}
    report = {
        "model_id": getattr(model, "bundle_config", {}).get("model_id"),
        "modality": "audio",
        "settings": {"reader": "cnn", "seconds": seconds, "clips": len(sources), "seed": seed},
        "samples": len(sources),
        "test_clips": len(sources),
        "nbits": model.nbits,
        "decision": {"users": users, "fpr_per_query": fpr, "max_distance": registry.decision.max_distance},
        "quality": quality,
        "quality_summary": f"SNR {quality['snr_db']:.1f} dB, PESQ {quality['pesq']:.2f}, STOI {quality['stoi']:.3f}",
        "results": results,
        "false_positives": false_positives,
        "single_attacks_below_0.90": sorted(k for k, v in results.items() if k != "clean" and v["bit_accuracy"] < 0.9),
        "reading": {
            "reader": "cnn",
            "seconds_per_image": timing["seconds"] / max(timing["clips"], 1),
            "escalated_share": None,
        },
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_attacks(report, out / "accuracy_per_attack.png")
    return report
