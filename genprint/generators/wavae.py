"""WavAE family: a small waveform autoencoder (Conv1d encoder; Conv1d / ConvTranspose1d decoder), genprint's audio
generator.

No neural audio decoder's weights install from the package registries (EnCodec, DAC, SNAC and Vocos fetch theirs from
a hub at run time), so genprint trains this one itself on its espeak-ng speech corpus the first time it is needed and
caches it (`genprint.audio.codec`); a `source` file of the same spec loads instead. Waveforms are mono in [-1, 1] at
genprint.audio.RATE; latents are (B, latent_channels, T / downscale).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genprint.errors import GenprintError
from genprint.generators.base import FAMILIES, Family, GeneratorAdapter

# codec_steps: how long genprint trains the codec when it makes its own (genprint.audio.codec)
DEFAULT_SPEC = {"family": "wavae", "latent_channels": 16, "width": 128, "rates": [4, 4, 4], "codec_steps": 3000}


class ResidualUnit(nn.Module):
    """x + 1x1(ELU(dilated 7-tap conv(ELU(x)))): the unit of SoundStream/EnCodec-style waveform stacks."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.act = nn.ELU()

    def forward(self, x):
        return x + self.mix(self.act(self.conv(self.act(x))))


def decoder(latent_channels: int, width: int, rates: list[int]) -> nn.Sequential:
    """latents (B, C, t) -> waveform (B, 1, t * prod(rates)) in [-1, 1]."""
    layers: list[nn.Module] = [nn.Conv1d(latent_channels, width, 7, padding=3)]
    c = width
    for r in rates:
        layers += [
            nn.ELU(),
            nn.ConvTranspose1d(c, c // 2, 2 * r, stride=r, padding=r // 2),
            ResidualUnit(c // 2, 1),
            ResidualUnit(c // 2, 3),
        ]
        c //= 2
    return nn.Sequential(*layers, nn.ELU(), nn.Conv1d(c, 1, 7, padding=3), nn.Tanh())


def encoder(latent_channels: int, width: int, rates: list[int]) -> nn.Sequential:
    """waveform (B, 1, T) -> latents (B, C, T / prod(rates))."""
    c = width // 2 ** len(rates)
    layers: list[nn.Module] = [nn.Conv1d(1, c, 7, padding=3)]
    for r in rates:
        layers += [ResidualUnit(c, 1), nn.ELU(), nn.Conv1d(c, 2 * c, 2 * r, stride=r, padding=r // 2)]
        c *= 2
    return nn.Sequential(*layers, nn.ELU(), nn.Conv1d(c, latent_channels, 3, padding=1))


def build(spec: dict) -> GeneratorAdapter:
    spec = {**DEFAULT_SPEC, **spec}
    if any(r % 2 for r in spec["rates"]):
        raise GenprintError(f"wavae rates must be even (exact lengths), got {spec['rates']}")
    args = spec["latent_channels"], spec["width"], spec["rates"]
    return GeneratorAdapter(
        "wavae",
        spec,
        decoder(*args),
        encoder(*args),
        spec["latent_channels"],
        downscale=math.prod(spec["rates"]),
        default_modulated=["*"],  # every conv: a fingerprint spread over the whole decoder
        output_range=(-1.0, 1.0),
        input_range=(-1.0, 1.0),
        signal_range=(-1.0, 1.0),
        modality="audio",
    )


def load(source: Path | None, spec: dict | None = None) -> GeneratorAdapter:
    spec = {**DEFAULT_SPEC, **{k: v for k, v in (spec or {}).items() if k != "source"}}
    if source is None:
        from genprint.audio.codec import pretrained_codec

        return pretrained_codec(spec)
    adapter = build(spec)
    state = _load(Path(source))
    try:
        adapter.decoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("decoder.")})
        adapter.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    except RuntimeError as exc:
        raise GenprintError(f"{source} is not a wavae codec of spec {spec}: {str(exc)[:200]}") from None
    adapter.spec["source"] = str(source)
    return adapter


def save_codec(adapter: GeneratorAdapter, path: Path) -> None:
    """Encoder and decoder in one safetensors file (what `load` reads)."""
    state = {f"decoder.{k}": v for k, v in adapter.decoder.state_dict().items()}
    state |= {f"encoder.{k}": v for k, v in adapter.encoder.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, path)


def export(adapter: GeneratorAdapter, decoder: nn.Module, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "wavae_decoder.safetensors"
    save_file({k: v.detach().contiguous() for k, v in decoder.state_dict().items()}, path)
    return path


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises many types for a file that is not its own
        raise GenprintError(f"{path} holds no wavae weights ({str(exc).splitlines()[0][:200]})") from None


def read(adapter: GeneratorAdapter, path: Path) -> dict[str, torch.Tensor]:
    """The decoder state of an export (its file or folder) or of a codec file."""
    state = _load(path / "wavae_decoder.safetensors" if path.is_dir() else path)
    return {k.removeprefix("decoder."): v for k, v in state.items() if not k.startswith("encoder.")}


FAMILIES["wavae"] = Family(build, load, export, read)
