"""Sound in and out: WAV/FLAC files as mono waveforms at genprint's rate, and a synthetic voiced signal."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import torch

from genprint.audio import AUDIO_SUFFIXES, RATE
from genprint.errors import GenprintError


def is_audio(path: str | Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (band-limited: no aliasing)."""
    if rate_in == rate_out:
        return wave
    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(wave, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


def load_audio(path: str | Path, multiple: int = 1, rate: int = RATE) -> torch.Tensor:
    """A sound file as a mono waveform (1, T) in [-1, 1] at `rate`, cut to a multiple of `multiple` samples."""
    import soundfile

    path = Path(path)
    if not is_audio(path):
        raise GenprintError(f"{path}: not an audio file genprint reads ({', '.join(AUDIO_SUFFIXES)})")
    try:
        data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, OSError for unreadable files
        raise GenprintError(f"cannot read audio file {path}: {str(exc).splitlines()[0][:200]}") from None
    wave = resample(data.mean(axis=1), file_rate, rate)
    n = len(wave) // multiple * multiple
    if n == 0:
        raise GenprintError(f"{path}: {len(wave)} samples, shorter than the decoder's {multiple}-sample frame")
    return torch.from_numpy(np.ascontiguousarray(wave[:n]))[None]


def save_audio(wave: torch.Tensor, path: str | Path, rate: int = RATE) -> None:
    """Write a waveform (1, T) or (T,) as WAV (16-bit PCM) or FLAC, by the file's suffix."""
    import soundfile

    path = Path(path)
    if not is_audio(path):
        raise GenprintError(f"{path}: write audio as {' or '.join(AUDIO_SUFFIXES)}")
    data = wave.detach().float().reshape(-1).clamp(-1, 1).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data, rate, subtype="PCM_16")


def synthetic_voice(seconds: float, rate: int = RATE, f0: float = 120.0, seed: int = 0) -> torch.Tensor:
    """A voiced, speech-like signal (1, T): a glottal pulse train with vibrato through three formant resonators,
    in syllable-long bursts. No recording needed; speech models have never heard it."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t) + 0.1 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = np.cumsum(pitch / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0) + 0.01 * rng.standard_normal(n)
    voiced = pulses
    for formant, width in ((rng.uniform(500, 800), 80), (rng.uniform(1000, 1800), 120), (2600, 200)):
        r = np.exp(-np.pi * width / rate)
        voiced = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / rate), r * r], voiced)
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    wave = voiced * envelope
    return torch.from_numpy((0.5 * wave / (np.abs(wave).max() + 1e-8)).astype(np.float32))[None]
