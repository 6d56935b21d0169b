"""Training sound: clips as waveforms, and as latents of the codec (the audio counterpart of genprint.data)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from genprint.audio import AUDIO_SUFFIXES, HELD_OUT_SECONDS, RATE
from genprint.audio.signals import load_audio
from genprint.data import list_files, split
from genprint.errors import GenprintError

log = logging.getLogger(__name__)


def resolve_clips(data: str | Path | None, split: str = "train") -> list[Path]:
    """Sound files of a folder, or (None) the espeak-ng speech corpus's `split`."""
    if data is None:
        from genprint.audio.speech import speech_clips

        return speech_clips(split)
    return list_files(data, AUDIO_SUFFIXES, "sound files")


class ClipBank:
    """Whole training clips as waveforms (`items`); `sample` draws random windows (padded with zeros when a clip is
    short)."""

    def __init__(self, paths, multiple: int, seed: int = 0):
        self.items = [load_audio(p, multiple) for p in paths]
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int, window: int) -> torch.Tensor:
        out = []
        for _ in range(batch):
            x = self.items[int(torch.randint(len(self.items), (1,), generator=self.gen))]
            if x.shape[-1] < window:
                x = F.pad(x, (0, window - x.shape[-1]))
            i = int(torch.randint(x.shape[-1] - window + 1, (1,), generator=self.gen))
            out.append(x[:, i : i + window])
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
        with torch.no_grad():  # the waveforms give way to their latents
            self.items = [encode(w[None].to(device))[0] for w in self.items]

    def sample(self, batch: int, crop: int) -> torch.Tensor:
        return super().sample(batch, crop // self.downscale)


def held_out_sources(
    data: str | Path | None, seconds: float, multiple: int, count: int, holdout: float = 0.0
) -> torch.Tensor:
    """(count, 1, samples): the first `seconds` of the first `count` held-out clips that last that long, cut to a
    multiple of `multiple` samples. Shorter clips are skipped, not padded: rendering and reading silence a clip never
    had costs bits no real file would (docs/audio.md). Held out: the corpus's held-out split, or a folder's `holdout`
    share (all of it with holdout 0, for an evaluation on another folder)."""
    if data is None:
        paths = resolve_clips(None, split="held_out")
    else:
        paths = resolve_clips(data) if holdout == 0 else split(resolve_clips(data), holdout)[1]
    if not paths:
        raise GenprintError(f"{data} with holdout {holdout} leaves no held-out sound: set holdout above 0")
    n = int(seconds * RATE) // multiple * multiple
    waves = []
    for path in paths:
        if len(waves) == count:
            break
        if (wave := load_audio(path)).shape[-1] >= n:
            waves.append(wave[..., :n])
    if not waves:
        where = data or "the speech corpus"
        raise GenprintError(f"no held-out clip of {where} lasts {seconds:g} s: read fewer seconds")
    return torch.stack(waves)


def held_out_windows(model, config, data: str | Path | None, samples: int, seed: int) -> torch.Tensor:
    """The learning curve's latents: the first HELD_OUT_SECONDS of the first `samples` held-out clips, as the
    evaluation reads them (`seed` unused: the clips are fixed)."""
    if data is not None and not config.holdout:
        raise GenprintError(f"validate_every reads held-out sound: with --data {data}, set holdout above 0")
    sources = held_out_sources(data, HELD_OUT_SECONDS, model.adapter.downscale, samples, config.holdout)
    with torch.no_grad():
        return model.encode(sources.to(model._device()))
