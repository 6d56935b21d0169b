"""The waveform reader: sound (B, 1, T) in [-1, 1] -> bit logits (B, nbits).

With `frontend: stft` the reader sees log-magnitude spectra (frequency bins as channels, frames as time), where a
per-channel rescaling of the decoder shows as a change of spectral shape; with `wave`, the samples themselves. Then a
stem and `stages` of strided 1-D conv blocks ([[width, stride], ...]); global pooling over time (mean and log
standard deviation per channel) makes the readout independent of the clip's length and position, so a time crop
leaves a readable code. With `stages: []` there are no conv stages: an MLP reads the front end's mean and standard
deviation over time per bin (the time-averaged spectrum), which learns far faster from nothing (docs/audio.md).
Each clip is divided by its own RMS first, so amplitude scaling changes nothing.
With `residual`, the reader also sees the clip against its re-rendering by the original codec (encoder, then the
original decoder): the speech cancels there and the fingerprint remains, as in the image reader.
"""

from __future__ import annotations

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


class AudioExtractor(nn.Module):
    N_FFT = 512

    def __init__(
        self,
        nbits: int,
        stages: list[list[int]] | None = None,
        frontend: str = "stft",
        residual: bool = False,
        modality: str = "audio",
    ):
        super().__init__()
        stages = [[256, 1], [256, 2], [256, 2]] if stages is None else stages
        if any(len(s) != 2 or min(s) < 1 for s in stages):
            raise GenprintError(f"audio extractor: stages must be [width, stride] pairs, each >= 1, got {stages}")
        if frontend not in ("stft", "wave"):
            raise GenprintError(f"audio extractor: frontend must be 'stft' or 'wave', got {frontend!r}")
        if not stages and frontend != "stft":
            raise GenprintError(
                "audio extractor: stages [] reads the time-averaged spectrum, so frontend must be 'stft'"
            )
        self.config = dict(nbits=nbits, stages=stages, frontend=frontend, residual=residual, modality=modality)
        self._reference: tuple[Callable[[torch.Tensor], torch.Tensor], int] | None = None
        c_in = (self.N_FFT // 2 + 1 if frontend == "stft" else 1) * (2 if residual else 1)
        if not stages:  # the time-averaged spectrum, read by an MLP
            self.features = None
            self.head = nn.Sequential(
                nn.BatchNorm1d(2 * c_in), nn.Linear(2 * c_in, 512), nn.ReLU(), nn.Linear(512, nbits)
            )
            return
        layers: list[nn.Module] = [
            nn.Conv1d(c_in, stages[0][0], 3 if frontend == "stft" else 15, padding="same"),
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

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        check_waves(waves.shape)
        with torch.autocast(waves.device.type, enabled=False):  # the fixed front end in full precision
            planes = [waves.float()]
            if self.config["residual"]:
                planes.append(self._re_rendered(planes[0]))
            planes = [self._front(p) for p in planes]
            x = torch.cat([planes[0], planes[0] - planes[1]] if len(planes) == 2 else planes, 1)
        if self.features is None:
            return self.head(torch.cat([x.mean(-1), x.std(-1, correction=0)], 1))
        h = self.features(x)
        pooled = torch.cat([h.mean(-1), torch.log(h.float().std(-1, correction=0) + 1e-4).to(h.dtype)], 1)
        return self.head(pooled)

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
