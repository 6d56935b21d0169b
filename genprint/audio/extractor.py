"""The waveform reader: sound (B, 1, T) in [-1, 1] -> bit logits (B, nbits).

With `frontend: stft` the reader sees log-magnitude spectra (frequency bins as channels, frames as time), where a
per-channel rescaling of the decoder shows as a change of spectral shape; with `wave`, the samples themselves. Then a
stem and `stages` of strided 1-D conv blocks ([[width, stride], ...]); global pooling over time (mean and log
standard deviation per channel) makes the readout independent of the clip's length and position, so a time crop
leaves a readable code. With `stages: []` there are no conv stages: SpectrumReader, an MLP on the front end's mean
and standard deviation per bin over the frames that sound (the time-averaged spectrum), which learns far faster.
Each clip is divided by its own RMS first, so amplitude scaling changes nothing.
With `residual`, the reader also sees the clip against its re-rendering by the original codec (encoder, then the
original decoder): the speech cancels there and the fingerprint remains, as in the image reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from genprint.errors import GenprintError

MIN_SAMPLES = 4096  # a quarter of a second at genprint.audio.RATE: the shortest clip the reader reads


def check_waves(shape) -> None:
    if len(shape) != 3 or shape[1] != 1:
        raise GenprintError(f"the audio reader takes waveforms (batch, 1, samples), got {tuple(shape)}")
    if shape[-1] < MIN_SAMPLES:
        raise GenprintError(f"clips must have at least {MIN_SAMPLES} samples, got {shape[-1]}")


class _WaveReader(nn.Module):
    """What both audio readers share: the check of the input, loudness divided out, the front end, and the residual
    reader's reference. Subclasses read the front end's planes (B, channels, frames) with `read`."""

    N_FFT = 512

    def __init__(self, nbits: int, frontend: str, residual: bool, modality: str, **layout):
        super().__init__()
        if frontend not in ("stft", "wave"):
            raise GenprintError(f"audio extractor: frontend must be 'stft' or 'wave', got {frontend!r}")
        self.config = dict(nbits=nbits, **layout, frontend=frontend, residual=residual, modality=modality)
        self._reference: tuple[Callable[[torch.Tensor], torch.Tensor], int] | None = None
        self.channels = (self.N_FFT // 2 + 1 if frontend == "stft" else 1) * (2 if residual else 1)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        check_waves(waves.shape)
        with torch.autocast(waves.device.type, enabled=False):  # the fixed front end in full precision
            planes = [waves.float()]
            if self.config["residual"]:
                planes.append(self._re_rendered(planes[0]))
            planes = [self._front(p) for p in planes]
            x = torch.cat([planes[0], planes[0] - planes[1]] if len(planes) == 2 else planes, 1)
        return self.read(x)

    def read(self, planes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _front(self, waves: torch.Tensor) -> torch.Tensor:
        waves = waves / waves.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-4)
        if self.config["frontend"] == "wave":
            return waves
        window = torch.hann_window(self.N_FFT, device=waves.device)
        spec = torch.stft(waves[:, 0], self.N_FFT, self.N_FFT // 4, window=window, return_complex=True)
        return torch.log(spec.abs() + 1e-3)  # (B, bins, frames)

    def attach_reference(self, render: Callable[[torch.Tensor], torch.Tensor], multiple: int) -> None:
        """The residual reader's reference: clips (multiples of `multiple` samples) -> the original codec's
        re-rendering. Not a submodule: those weights are the bundle's encoder and reference decoder."""
        self._reference = (render, multiple)

    def _re_rendered(self, waves: torch.Tensor) -> torch.Tensor:
        if self._reference is None:
            raise GenprintError("this residual audio reader has no reference codec: build it through GenprintModel")
        render, multiple = self._reference
        n = waves.shape[-1] // multiple * multiple
        with torch.no_grad():
            return F.pad(render(waves[..., :n]).float(), (0, waves.shape[-1] - n))


class AudioExtractor(_WaveReader):
    """Strided 1-D conv stages over the front end, pooled over time (mean and log standard deviation per channel)."""

    def __init__(
        self,
        nbits: int,
        stages: list[list[int]] | None = None,
        frontend: str = "stft",
        residual: bool = False,
        modality: str = "audio",
    ):
        stages = [[256, 1], [256, 2], [256, 2]] if stages is None else stages
        if not stages:
            raise GenprintError("audio extractor: stages [] is the SpectrumReader (make_audio_extractor builds it)")
        if any(len(s) != 2 or min(s) < 1 for s in stages):
            raise GenprintError(f"audio extractor: stages must be [width, stride] pairs, each >= 1, got {stages}")
        super().__init__(nbits, frontend, residual, modality, stages=stages)
        layers: list[nn.Module] = [
            nn.Conv1d(self.channels, stages[0][0], 3 if frontend == "stft" else 15, padding="same"),
            nn.BatchNorm1d(stages[0][0]),
            nn.ReLU(),
        ]
        c = stages[0][0]
        for width, stride in stages:
            layers += [
                nn.Conv1d(c, width, 2 * stride + 1, stride=stride, padding=stride),
                nn.BatchNorm1d(width),
                nn.ReLU(),
                nn.Conv1d(width, width, 7, padding=3),
                nn.BatchNorm1d(width),
                nn.ReLU(),
            ]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, nbits)

    def read(self, planes: torch.Tensor) -> torch.Tensor:
        h = self.features(planes)
        pooled = torch.cat([h.mean(-1), torch.log(h.float().std(-1, correction=0) + 1e-4).to(h.dtype)], 1)
        return self.head(pooled)


class SpectrumReader(_WaveReader):
    """An MLP on each STFT bin's mean and standard deviation over time (the time-averaged spectrum): learns far faster
    from nothing than the conv stages (docs/audio.md). Config `stages: []` selects it. `pool: sounding` takes the
    statistics over the frames within 40 dB of the clip's loudest, its mean log level taken out, so pauses and
    silence around a clip change nothing; `every` (bundles saved before `pool` existed) over every frame."""

    SILENCE = math.log(1e4)  # frames 40 dB (in log power) below the clip's loudest are silence: not read
    POOLS = ("sounding", "every")

    def __init__(
        self,
        nbits: int,
        frontend: str = "stft",
        residual: bool = False,
        modality: str = "audio",
        pool: str = "sounding",
    ):
        if frontend != "stft":
            raise GenprintError(
                "audio extractor: stages [] reads the time-averaged spectrum, so frontend must be 'stft'"
            )
        if pool not in self.POOLS:
            raise GenprintError(f"audio extractor: pool must be one of {', '.join(self.POOLS)}, got {pool!r}")
        super().__init__(nbits, frontend, residual, modality, stages=[], pool=pool)
        self.head = nn.Sequential(
            nn.BatchNorm1d(2 * self.channels), nn.Linear(2 * self.channels, 512), nn.ReLU(), nn.Linear(512, nbits)
        )

    def read(self, planes: torch.Tensor) -> torch.Tensor:
        if self.config["pool"] == "every":
            return self.head(torch.cat([planes.mean(-1), planes.std(-1, correction=0)], 1))
        bins = self.N_FFT // 2 + 1
        spectrum = planes[:, :bins]
        level = torch.logsumexp(2 * spectrum.detach(), 1)  # (B, frames): each frame's log power
        weight = (level >= level.amax(-1, keepdim=True) - self.SILENCE).to(planes.dtype)
        weight = (weight / weight.sum(-1, keepdim=True))[:, None]  # (B, 1, frames), summing to 1 over sounding frames
        offset = (spectrum * weight).sum(-1).mean(1)[:, None, None]
        x = torch.cat([spectrum - offset, planes[:, bins:]], 1)
        mean = (x * weight).sum(-1)
        std = ((x - mean[..., None]).pow(2) * weight).sum(-1).clamp_min(1e-8).sqrt()
        return self.head(torch.cat([mean, std], 1))


def make_audio_extractor(nbits: int, stages: list[list[int]] | None = None, **config) -> nn.Module:
    """The audio reader a config describes: conv `stages`, or with `stages: []` the time-averaged spectrum's MLP."""
    if stages == []:
        return SpectrumReader(nbits, **config)
    return AudioExtractor(nbits, stages, **config)
