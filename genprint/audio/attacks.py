"""What happens to sound after it leaves the generator: differentiable attacks for training, and the evaluation suite
(the training attacks at fixed strengths plus MP3, Opus and AAC through ffmpeg)."""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from genprint.attacks.train import SeededDraws
from genprint.audio import RATE
from genprint.errors import GenprintError


def add_noise(x: torch.Tensor, snr_db: float, gen: torch.Generator | None = None) -> torch.Tensor:
    power = x.pow(2).mean(-1, keepdim=True).clamp_min(1e-8)
    noise = torch.randn(x.shape, generator=gen).to(x) if gen is not None else torch.randn_like(x)
    return x + noise * (power / 10 ** (snr_db / 10)).sqrt()


def band(x: torch.Tensor, low_hz: float = 0.0, high_hz: float | None = None) -> torch.Tensor:
    """Keep the band [low_hz, high_hz] (an ideal FFT mask): low-pass, high-pass or both."""
    spec = torch.fft.rfft(x.float(), dim=-1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / RATE).to(x.device)
    keep = (freqs >= low_hz) & (freqs <= (high_hz or RATE / 2))
    return torch.fft.irfft(spec * keep, n=x.shape[-1], dim=-1).to(x.dtype)


def resample_through(x: torch.Tensor, rate: int) -> torch.Tensor:
    """Down to `rate` and back (linear interpolation: what a cheap resampler does)."""
    n = x.shape[-1]
    low = F.interpolate(x, size=max(1, round(n * rate / RATE)), mode="linear", align_corners=False)
    return F.interpolate(low, size=n, mode="linear", align_corners=False)


def speed(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Play `factor` times faster (pitch moves with it); the length changes."""
    return F.interpolate(x, size=max(MIN_LEN, round(x.shape[-1] / factor)), mode="linear", align_corners=False)


def echo(x: torch.Tensor, delay_s: float, gain: float) -> torch.Tensor:
    d = max(1, int(delay_s * RATE))
    return (x + gain * F.pad(x, (d, 0))[..., : x.shape[-1]]) / (1 + gain)


def time_crop(x: torch.Tensor, keep: float, gen: torch.Generator | None = None) -> torch.Tensor:
    n = x.shape[-1]
    m = max(MIN_LEN, int(n * keep))
    start = int(torch.randint(n - m + 1, (1,), generator=gen)) if n > m else 0
    return x[..., start : start + m]


MIN_LEN = 4096  # no attack leaves a clip shorter than the reader reads (genprint.audio.extractor.MIN_SAMPLES)

# name -> (function of (x, rng, strength in [0, 1]), kept short: every draw at full strength is a real-world edit)
TRAIN_ATTACKS = {
    "noise": lambda x, r, s: add_noise(x, 40 - 25 * s * r.random()),  # 40 dB down to 15 dB SNR
    "lowpass": lambda x, r, s: band(x, high_hz=8000 - 5000 * s * r.random()),
    "highpass": lambda x, r, s: band(x, low_hz=500 * s * r.random()),
    "resample": lambda x, r, s: resample_through(x, int(RATE - 8000 * s * r.random())),
    "gain": lambda x, r, s: x * (1 + s * (r.uniform(0.25, 2.0) - 1)),
    "echo": lambda x, r, s: echo(x, r.uniform(0.05, 0.3), 0.5 * s * r.random()),
    "crop": lambda x, r, s: time_crop(x, 1 - 0.5 * s * r.random()),
    "speed": lambda x, r, s: speed(x, 1 + s * r.uniform(-0.1, 0.1)),
}


@dataclass
class AudioTrainAttacks(SeededDraws):
    """config: {name: {"p": probability}}; one drawn attack per clip. Attacks that change the length (crop, speed)
    act on the whole batch at once, so a batch stays one tensor."""

    config: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        if unknown := set(self.config) - set(TRAIN_ATTACKS):
            raise GenprintError(f"unknown audio training attacks {sorted(unknown)}; known: {sorted(TRAIN_ATTACKS)}")
        self.rng = random.Random(self.seed)

    def __call__(self, waves: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        if not self.config or strength <= 0:
            return waves
        whole = [n for n in ("crop", "speed") if n in self.config and self.rng.random() < self.config[n].get("p", 0)]
        for name in whole:
            waves = TRAIN_ATTACKS[name](waves, self.rng, strength)
        out = []
        for i in range(waves.shape[0]):
            x = waves[i : i + 1]
            names = [n for n, c in self.config.items() if n not in ("crop", "speed") and self.rng.random() < c["p"]]
            if names:
                x = TRAIN_ATTACKS[self.rng.choice(names)](x, self.rng, strength)
            out.append(x)
        return torch.cat(out)


def codec_round_trip(x: torch.Tensor, codec: str, bitrate_k: int) -> torch.Tensor:
    """Encode with ffmpeg (`mp3`, `opus` or `aac`) at `bitrate_k` kbit/s and decode back to RATE; same length."""
    if shutil.which("ffmpeg") is None:
        raise GenprintError("audio codec attacks need ffmpeg (Debian: apt-get install ffmpeg)")
    from genprint.audio.signals import load_audio, save_audio

    encoder, suffix = {"mp3": ("libmp3lame", "mp3"), "opus": ("libopus", "ogg"), "aac": ("aac", "m4a")}[codec]
    out = []
    with tempfile.TemporaryDirectory(prefix="gp-audio-") as tmp:
        for i, wave in enumerate(x):
            src, enc, dec = (Path(tmp) / f"{i}.{s}" for s in ("wav", suffix, "dec.wav"))
            save_audio(wave, src)
            for cmd in (
                ["-i", str(src), "-c:a", encoder, "-b:a", f"{bitrate_k}k", str(enc)],
                ["-i", str(enc), "-ar", str(RATE), "-ac", "1", str(dec)],
            ):
                subprocess.run(["ffmpeg", "-v", "error", "-y", *cmd], check=True, capture_output=True, timeout=120)
            y = load_audio(dec)[..., : x.shape[-1]]
            out.append(F.pad(y, (0, x.shape[-1] - y.shape[-1])))
    return torch.stack(out).to(x)


def _gain(x: torch.Tensor, g: float) -> torch.Tensor:
    return (x * g).clamp(-1, 1)


def attack_suite() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> waveform batch -> attacked batch: every evaluation attack, at fixed strengths."""
    gen = torch.Generator().manual_seed(0)
    suite = {
        f"{c}_{k}k": partial(codec_round_trip, codec=c, bitrate_k=k) for c in ("mp3", "aac") for k in (32, 64, 128)
    }
    suite |= {f"opus_{k}k": partial(codec_round_trip, codec="opus", bitrate_k=k) for k in (16, 32, 64)}
    suite |= {f"noise_{s}db": partial(add_noise, snr_db=s, gen=gen) for s in (30, 20, 10)}
    suite |= {f"lowpass_{f}hz": partial(band, high_hz=f) for f in (4000, 2000)}
    suite |= {f"highpass_{f}hz": partial(band, low_hz=f) for f in (300, 1000)}
    suite |= {f"resample_{r}hz": partial(resample_through, rate=r) for r in (8000, 11025)}
    suite |= {f"speed_{f}": partial(speed, factor=f) for f in (0.9, 1.1)}
    suite |= {f"gain_{g}": partial(_gain, g=g) for g in (0.25, 2.0)}
    suite |= {"echo": partial(echo, delay_s=0.2, gain=0.4), "crop_half": partial(time_crop, keep=0.5, gen=gen)}
    return suite
