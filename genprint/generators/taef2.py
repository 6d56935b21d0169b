"""The TAEF2 tiny autoencoder from ../shared/models/taef2: genprint's default generator.

With no shared folder the same architecture starts from a fixed seed (random weights), which
keeps every code path runnable; the CLI says so when it happens.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genprint.errors import GenprintError
from genprint.generators.base import FAMILIES, Family, GeneratorAdapter
from genprint.generators.tae import tae_decoder, tae_encoder

log = logging.getLogger(__name__)

# The 3x3 convs inside the residual blocks (WOUAF modulates ResnetBlock2D conv1/conv2 the same way).
BLOCK_CONVS = [f"{b}.conv.{c}" for b in (3, 4, 5, 8, 9, 10, 13, 14, 15, 18) for c in (0, 2, 4)]
DEFAULT_SPEC = {"family": "taef2", "latent_channels": 32, "width": 64, "pooled": True}


def build(spec: dict) -> GeneratorAdapter:
    spec = {**DEFAULT_SPEC, **spec}
    dec = tae_decoder(spec["latent_channels"], spec["width"], spec["pooled"])
    enc = tae_encoder(spec["latent_channels"], spec["width"], spec["pooled"])
    return GeneratorAdapter("taef2", spec, dec, enc, spec["latent_channels"], default_modulated=list(BLOCK_CONVS))


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def load(source: Path | None, spec: dict | None = None) -> GeneratorAdapter:
    adapter = build({})
    if source is None:
        torch.manual_seed(0)
        adapter = build({})
        adapter.spec["source"] = "random-init"
        log.warning(
            "no TAEF2 weights found: using a randomly initialised TAE decoder "
            "(set GENPRINT_SHARED or --generator-source)"
        )
        return adapter
    source = Path(source)
    dec_path = source / "taef2_decoder.pth" if source.is_dir() else source
    enc_path = source / "taef2_encoder.pth" if source.is_dir() else None
    if not dec_path.exists():
        raise GenprintError(f"no TAEF2 decoder weights at {dec_path}")
    try:
        adapter.decoder.load_state_dict(_read_state(dec_path))
        if enc_path is not None and enc_path.exists():
            adapter.encoder.load_state_dict(_read_state(enc_path))
        else:
            adapter.encoder = None
    except (RuntimeError, OSError) as exc:
        raise GenprintError(f"{dec_path} is not a TAEF2 state dict: {str(exc).splitlines()[0]}") from None
    adapter.spec["source"] = str(source)
    return adapter


def export(adapter: GeneratorAdapter, decoder, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "taef2_decoder.safetensors"
    save_file({k: v.detach().contiguous() for k, v in decoder.state_dict().items()}, path)
    return path


def read(adapter: GeneratorAdapter, path: Path) -> dict[str, torch.Tensor]:
    """The decoder state dict `export` wrote (its file, or the folder holding it)."""
    path = path / "taef2_decoder.safetensors" if path.is_dir() else path
    try:
        return _read_state(path)
    except Exception as exc:  # safetensors / torch raise many types for a file that is not theirs
        raise GenprintError(f"{path} holds no TAEF2 decoder weights ({str(exc).splitlines()[0][:200]})") from None


FAMILIES["taef2"] = Family(build, load, export, read)
