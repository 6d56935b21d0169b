"""genprint's own audio codec: the wavae autoencoder trained on the espeak-ng speech corpus, once, then cached.

It stands where a pretrained neural audio decoder would (see genprint.generators.wavae for why none is used): the
original decoder that fingerprinting fine-tunes and the quality reference. Training minimises L1 on the waveform
plus the multi-resolution STFT distance, on random one-second windows of the training clips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from genprint.audio.data import ClipBank
from genprint.audio.quality import snr, stft_distance
from genprint.audio.speech import CORPUS_VERSION, speech_clips
from genprint.generators.base import GeneratorAdapter
from genprint.settings import cache_dir

log = logging.getLogger(__name__)

CODEC_BATCH, CODEC_WINDOW = 8, 16384


def train_codec(adapter: GeneratorAdapter, steps: int, seed: int = 0) -> dict[str, float]:
    """Fit encoder and decoder to the training speech; returns the last window's mean SNR and STFT distance."""
    torch.manual_seed(seed)
    bank = ClipBank(speech_clips("train"), adapter.downscale, seed=seed)
    params = list(adapter.encoder.parameters()) + list(adapter.decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    started, recent = time.perf_counter(), deque(maxlen=50)  # (SNR, loss) of the last 50 steps
    for step in range(1, steps + 1):
        wave = bank.sample(CODEC_BATCH, CODEC_WINDOW)
        out = adapter.decode(adapter.encode(wave))
        loss = F.l1_loss(out, wave) + stft_distance(out, wave).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        recent.append((snr(out.detach(), wave).mean().item(), loss.item()))
        if step % 250 == 0 or step == steps:
            snr_db, mean_loss = np.mean(recent, axis=0)
            log.info(
                "audio codec step %d/%d  snr %.1f dB  loss %.3f  (%.0f s)",
                step,
                steps,
                snr_db,
                mean_loss,
                time.perf_counter() - started,
            )
    snr_db, mean_loss = np.mean(recent, axis=0)
    return {"snr": float(snr_db), "loss": float(mean_loss)}


def pretrained_codec(spec: dict) -> GeneratorAdapter:
    """The codec of `spec`, from the cache, trained first when absent (minutes, said aloud)."""
    from genprint.generators.wavae import build, load, save_codec

    key = json.dumps({**spec, "corpus": CORPUS_VERSION}, sort_keys=True)
    path = cache_dir() / "audio" / f"wavae-{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"
    if not path.exists():
        steps = spec["codec_steps"]
        log.warning("no trained audio codec in %s: training one on the speech corpus (%d steps)", path, steps)
        adapter = build(spec)
        train_codec(adapter, steps)
        save_codec(adapter, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
    return load(path, spec)
