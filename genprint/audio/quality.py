"""How close two waveforms are: SNR in dB (the audio counterpart of PSNR), a multi-resolution STFT distance (the
training's perceptual term, as in Parallel WaveGAN and EnCodec), and PESQ / STOI from their PyPI packages."""

from __future__ import annotations

import numpy as np
import torch

from genprint.audio import RATE

STFT_SIZES = (256, 512, 1024)


def snr(wave: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample SNR in dB of `wave` against `reference` (B, 1, T): signal power over the difference's."""
    signal = reference.flatten(1).pow(2).mean(1)
    noise = (wave - reference).flatten(1).pow(2).mean(1)
    return 10 * torch.log10(signal.clamp_min(1e-10) / noise.clamp_min(1e-10))


def _magnitude(wave: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave.flatten(0, 1), n_fft, n_fft // 4, window=window, return_complex=True)
    return spec.abs().clamp_min(1e-5)


def stft_distance(wave: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-sample spectral convergence + log-magnitude L1, averaged over STFT_SIZES (B,)."""
    out = 0
    for n in STFT_SIZES:
        a, b = _magnitude(wave.float(), n), _magnitude(reference.float(), n)
        convergence = (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-5)
        out = out + convergence + (a.log() - b.log()).abs().flatten(1).mean(1)
    return out / len(STFT_SIZES)


def perceptual(wave: torch.Tensor, reference: torch.Tensor, rate: int = RATE) -> dict[str, float]:
    """Wide-band PESQ (1-4.5) and STOI (0-1) of one waveform against its reference."""
    from pesq import pesq
    from pystoi import stoi

    a, b = wave.reshape(-1).double().cpu().numpy(), reference.reshape(-1).double().cpu().numpy()
    try:
        pesq_score = float(pesq(rate, b, a, "wb"))
    except Exception:  # pesq raises on silence-only input ("No utterances detected")
        pesq_score = float("nan")
    return {"pesq": pesq_score, "stoi": float(stoi(b, a, rate, extended=False)), "snr": float(snr(wave, reference))}


def mean_finite(values) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
