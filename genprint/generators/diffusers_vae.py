"""diffusers `AutoencoderKL` (Stable Diffusion's VAE) and `AutoencoderTiny` (TAESD) decoders.

Users with real checkpoints point genprint at a local diffusers folder; export writes a folder
that stock `from_pretrained` loads, with the fingerprint baked into the decoder weights.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from genprint.errors import GenprintError
from genprint.generators.base import FAMILIES, Family, GeneratorAdapter


class KLDecoder(nn.Module):
    """post_quant_conv + decoder: what `AutoencoderKL.decode` runs on a raw latent."""

    def __init__(self, vae):
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv if vae.post_quant_conv is not None else nn.Identity()
        self.decoder = vae.decoder

    def forward(self, z):
        return self.decoder(self.post_quant_conv(z))


class KLEncoder(nn.Module):
    """encoder + quant_conv, returning the posterior mode (deterministic latents)."""

    def __init__(self, vae):
        super().__init__()
        self.encoder = vae.encoder
        self.quant_conv = vae.quant_conv if vae.quant_conv is not None else nn.Identity()

    def forward(self, x):
        moments = self.quant_conv(self.encoder(x))
        return moments.chunk(2, dim=1)[0]


def _vae_class(family: str):
    from diffusers import AutoencoderKL, AutoencoderTiny

    return {"diffusers-kl": AutoencoderKL, "diffusers-tiny": AutoencoderTiny}[family]


def _resnet_convs(decoder: nn.Module, family: str) -> list[str]:
    """Default modulated convs: ResnetBlock2D conv1/conv2 (KL), or the tiny blocks' 3x3 convs."""
    names = []
    for name, module in decoder.named_modules():
        kind = type(module).__name__
        if family == "diffusers-kl" and kind == "ResnetBlock2D":
            names += [f"{name}.conv1", f"{name}.conv2"]
        elif family == "diffusers-tiny" and kind == "AutoencoderTinyBlock":
            names += [f"{name}.conv.{i}" for i in (0, 2, 4)]
    return names


def _adapter(family: str, vae, spec: dict) -> GeneratorAdapter:
    # Both families follow the diffusers convention: images in [-1, 1] in and out.
    dec, enc = (KLDecoder(vae), KLEncoder(vae)) if family == "diffusers-kl" else (vae.decoder, vae.encoder)
    ranges = dict(output_range=(-1.0, 1.0), input_range=(-1.0, 1.0))
    stages = vae.config.block_out_channels if family == "diffusers-kl" else vae.config.num_encoder_blocks
    downscale = 2 ** (len(stages) - 1)
    return GeneratorAdapter(
        family,
        spec,
        dec,
        enc,
        vae.config.latent_channels,
        downscale=downscale,
        default_modulated=_resnet_convs(dec, family),
        **ranges,
    )


def build(spec: dict) -> GeneratorAdapter:
    family = spec["family"]
    vae = _vae_class(family).from_config(spec["config"])
    return _adapter(family, vae, spec)


def load_family(family: str):
    def load(source: Path | None, spec: dict) -> GeneratorAdapter:
        if source is None or not (Path(source) / "config.json").exists():
            raise GenprintError(
                f"{family} needs a local diffusers folder with config.json (got {source}); nothing is downloaded"
            )
        try:
            vae = _vae_class(family).from_pretrained(str(source), local_files_only=True)
        except Exception as exc:  # diffusers raises many types for a bad folder
            raise GenprintError(
                f"cannot load a {family} autoencoder from {source}: {str(exc).splitlines()[0]}"
            ) from None
        spec = {"family": family, "config": dict(vae.config), "source": str(source)}
        return _adapter(family, vae.float().eval(), spec)

    return load


def export(adapter: GeneratorAdapter, decoder: nn.Module, out_dir: Path) -> Path:
    """A folder `AutoencoderKL/AutoencoderTiny.from_pretrained` loads, with the baked decoder inside."""
    family = adapter.family
    vae = _vae_class(family).from_config(adapter.spec["config"])
    fresh = _adapter(family, vae, adapter.spec)
    fresh.decoder.load_state_dict(decoder.state_dict())
    if adapter.encoder is not None:
        fresh.encoder.load_state_dict(adapter.encoder.state_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def read(adapter: GeneratorAdapter, path: Path) -> dict:
    """The decoder weights of a folder `export` wrote (any diffusers folder of the family), in the adapter's layout."""
    try:
        vae = _vae_class(adapter.family).from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # diffusers raises many types for a folder that is not its own
        raise GenprintError(f"{path} is not a {adapter.family} folder ({str(exc).splitlines()[0][:200]})") from None
    return _adapter(adapter.family, vae, adapter.spec).decoder.state_dict()


for _family in ("diffusers-kl", "diffusers-tiny"):
    FAMILIES[_family] = Family(build, load_family(_family), export, read)
