"""Training sound: clips as waveforms, and as latents of the codec (the audio counterpart of genprint.data)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from genprint.audio import AUDIO_SUFFIXES
from genprint.audio.signals import load_audio
from genprint.errors import GenprintError

log = logging.getLogger(__name__)


def resolve_clips(data: str | Path | None, split: str = "train") -> list[Path]:
    """Sound files of a folder, or (None) the espeak-ng speech corpus's `split`."""
    if data is None:
        from genprint.audio.speech import speech_clips

        return speech_clips(split)
    folder = Path(data)
    if not folder.is_dir():
        raise GenprintError(f"{folder}: not a folder of sound files")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise GenprintError(f"{folder} holds no {' or '.join(AUDIO_SUFFIXES)} files")
    return paths


class ClipBank:
    """Whole training clips as waveforms; `sample` draws random windows (padded with silence when a clip is short)."""

    def __init__(self, paths, multiple: int, seed: int = 0):
        self.waves = [load_audio(p, multiple) for p in paths]
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int, window: int) -> torch.Tensor:
        out = []
        for _ in range(batch):
            w = self.waves[int(torch.randint(len(self.waves), (1,), generator=self.gen))]
            if w.shape[-1] < window:
                w = F.pad(w, (0, window - w.shape[-1]))
            i = int(torch.randint(w.shape[-1] - window + 1, (1,), generator=self.gen))
            out.append(w[:, i : i + window])
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


class AudioLatentBank(ClipBank):
    """The codec's latents of whole clips; `sample` draws windows of `crop` samples (as genprint.data.LatentBank)."""

    def __init__(self, encode, paths, downscale: int, crop: int, seed: int = 0, device="cpu"):
        if crop % downscale:
            raise GenprintError(f"crop {crop} must be a multiple of the decoder's downscale factor {downscale}")
        super().__init__(paths, downscale, seed)
        self.downscale = downscale
        with torch.no_grad():
            self.latents = [encode(w[None].to(device))[0] for w in self.waves]
        del self.waves

    def sample(self, batch: int, crop: int) -> torch.Tensor:
        w, out = crop // self.downscale, []
        for _ in range(batch):
            z = self.latents[int(torch.randint(len(self.latents), (1,), generator=self.gen))]
            if z.shape[-1] < w:
                z = F.pad(z, (0, w - z.shape[-1]))
            i = int(torch.randint(z.shape[-1] - w + 1, (1,), generator=self.gen))
            out.append(z[:, i : i + w])
        return torch.stack(out)
