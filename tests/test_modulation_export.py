"""Modulation forms (a) per-sample and (b) baked agree; exports load in their native loaders and reproduce images."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genprint.bundle import load_bundle, save_bundle
from genprint.errors import GenprintError
from genprint.fingerprint import random_fingerprints
from genprint.generators import build_adapter, load_adapter_source
from genprint.generators.tae import tae_decoder
from genprint.model import GenprintModel

TINY_KL = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [16, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 32,
}
TINY_TINY = {
    "encoder_block_out_channels": [16, 16, 16, 16],
    "decoder_block_out_channels": [16, 16, 16, 16],
    "num_encoder_blocks": [1, 1, 1, 1],
    "num_decoder_blocks": [1, 1, 1, 1],
    "latent_channels": 4,
}


def randomise_mapping(model: GenprintModel, seed: int = 0, std: float = 0.2) -> GenprintModel:
    """Trained mappings are not identity: give the zero-initialised affines real weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in model.mapping.affines:
            a.weight.copy_(torch.randn(a.weight.shape, generator=g) * std)
    return model.eval()


def taef2_model(nbits=48, **kw):
    torch.manual_seed(0)
    return randomise_mapping(GenprintModel.create(build_adapter({"family": "taef2"}), nbits, **kw))


def diffusers_model(family, config, nbits=32):
    torch.manual_seed(0)
    return randomise_mapping(GenprintModel.create(build_adapter({"family": family, "config": config}), nbits))


def test_scales_start_at_exactly_one():
    model = GenprintModel.create(build_adapter({"family": "taef2"}), 48)
    bits = random_fingerprints(4, 48, rng=np.random.default_rng(0))
    assert all(torch.equal(s, torch.ones_like(s)) for s in model.scales(bits))


@pytest.mark.parametrize(
    "make",
    [
        lambda: taef2_model(),
        lambda: diffusers_model("diffusers-kl", TINY_KL),
        lambda: diffusers_model("diffusers-tiny", TINY_TINY),
    ],
    ids=["taef2", "kl", "tiny"],
)
def test_per_sample_and_baked_forms_agree(make):
    model = make()
    nb = model.nbits
    bits = random_fingerprints(3, nb, rng=np.random.default_rng(1))
    latents = torch.randn(3, model.adapter.latent_channels, 4, 4)
    with torch.no_grad():
        batched = model.decode(latents, bits)  # three users in one forward pass
        for i in range(3):
            baked = model.bake(bits[i])
            single = model.adapter.decode(latents[i : i + 1], decoder=baked)
            assert (single[0] - batched[i]).abs().max().item() < 1e-5
        # users really differ, and the unmodulated decoder differs from them
        assert (batched[0] - batched[1]).abs().max() > 1e-3
        assert (model.decode(latents) - batched).abs().max() > 1e-3


def test_a_code_at_strength_t_is_the_baked_weights_moved_back_towards_the_decoder_s_own():
    """decode(..., strength=t) (code_shrink's training view) is exactly the interpolation base + t (baked - base)."""
    model = taef2_model()
    bits = random_fingerprints(1, 48, rng=np.random.default_rng(2))
    latents = torch.randn(1, 32, 4, 4, generator=torch.Generator().manual_seed(0))
    base, baked = model.decoder.state_dict(), model.bake(bits[0]).state_dict()
    between = model.adapter.copy_decoder()
    between.load_state_dict({k: base[k] + 0.3 * (baked[k] - base[k]) for k in base})
    with torch.no_grad():
        shrunk = model.decode(latents, bits, strength=torch.tensor([0.3]))
        assert (shrunk - model.adapter.decode(latents, decoder=between)).abs().max() < 1e-5
        assert torch.equal(model.decode(latents, bits, strength=torch.ones(1)), model.decode(latents, bits))
        assert (model.decode(latents, bits, strength=torch.zeros(1)) - model.decode(latents)).abs().max() < 1e-6
        assert (shrunk - model.decode(latents, bits)).abs().max() > 1e-4
        with pytest.raises(GenprintError, match="a code strength needs a code"):
            model.decode(latents, strength=torch.ones(1))


def test_in_place_scaling_gives_the_autograd_path_s_images():
    """Without grad, an input that only its conv reads (after a ReLU inside a block) is scaled in place; a block's
    first conv shares its input with the skip and is not. Every batch and user decodes exactly as with grad."""
    model = taef2_model()
    own = dict(zip(model.modulator.conv_names, model.modulator._own_input))
    assert own["3.conv.2"] and own["3.conv.4"] and not own["3.conv.0"]
    for i, (batch, side) in enumerate([(3, 4), (2, 6)]):
        latents = torch.randn(batch, 32, side, side, generator=torch.Generator().manual_seed(i))
        bits = random_fingerprints(batch, 48, rng=np.random.default_rng(i))
        with torch.inference_mode():
            fast = model.decode(latents, bits)
        with torch.no_grad():
            also_fast = model.decode(latents, bits)
        reference = model.decode(latents, bits).detach()  # grad enabled: a new tensor per conv
        assert torch.equal(fast, reference) and torch.equal(also_fast, reference)


def test_modulation_does_not_touch_the_decoder_weights():
    model = taef2_model()
    before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    with torch.no_grad():
        model.decode(torch.randn(2, 32, 4, 4), random_fingerprints(2, 48))
        model.bake(random_fingerprints(1, 48)[0])
    assert all(torch.equal(before[k], v) for k, v in model.decoder.state_dict().items())


@pytest.mark.parametrize(
    "family,config,cls", [("diffusers-kl", TINY_KL, "AutoencoderKL"), ("diffusers-tiny", TINY_TINY, "AutoencoderTiny")]
)
def test_export_loads_in_stock_diffusers_and_reproduces_images(tmp_path, family, config, cls):
    import diffusers

    model = diffusers_model(family, config)
    bits = random_fingerprints(1, model.nbits, rng=np.random.default_rng(2))[0]
    out = model.adapter.export_native(model.bake(bits), tmp_path / "vae")
    vae = getattr(diffusers, cls).from_pretrained(str(out)).eval()
    latents = torch.randn(2, model.adapter.latent_channels, 4, 4)
    with torch.no_grad():
        stock = vae.decode(latents).sample  # the user's model, as a hub user loads it
        lo, hi = model.adapter.output_range
        stock = ((stock - lo) / (hi - lo)).clamp(0, 1)
        ours = model.decode(latents, np.stack([bits, bits]))  # per-sample form
    assert (stock - ours).abs().max().item() < 1e-5


def test_taef2_export_is_a_plain_state_dict(tmp_path):
    model = taef2_model()
    bits = random_fingerprints(1, 48, rng=np.random.default_rng(3))[0]
    path = model.adapter.export_native(model.bake(bits), tmp_path)
    plain = tae_decoder()
    plain.load_state_dict(load_file(path))
    z = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        assert (plain(z).clamp(0, 1) - model.decode(z, bits[None])).abs().max().item() < 1e-5


def test_bundle_round_trip_and_version_check(tmp_path):
    model = taef2_model(nbits=32)
    save_bundle(model, tmp_path / "b", train_config={"name": "t"})
    loaded = load_bundle(tmp_path / "b")
    bits = random_fingerprints(2, 32, rng=np.random.default_rng(4))
    z = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        assert torch.equal(model.decode(z, bits), loaded.decode(z, bits))
        assert torch.equal(model.decode_reference(z), loaded.decode_reference(z))
    assert not any(p.suffix in {".pt", ".pth", ".pkl"} for p in (tmp_path / "b").iterdir())
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    cfg["format"] = 999
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GenprintError, match="format 999"):
        load_bundle(tmp_path / "b")


def test_wrong_shapes_are_clear_errors():
    model = taef2_model()
    with pytest.raises(GenprintError, match="latents must have shape"):
        model.decode(torch.randn(1, 4, 4, 4))
    with pytest.raises(GenprintError, match="bits must have shape"):
        model.scales(np.zeros((1, 40)))
    with pytest.raises(GenprintError, match="at least 64 px"):
        model.extract(torch.rand(1, 3, 32, 32))


def test_real_taef2_reconstructs_photos():
    from genprint.data import load_rgb, resolve_photos
    from genprint.metrics import psnr
    from genprint.settings import taef2_dir

    if taef2_dir() is None:
        pytest.skip("shared TAEF2 weights not found")
    adapter = load_adapter_source("taef2", taef2_dir())
    x = load_rgb(resolve_photos(None)[0], 8)[:, :128, :128][None]
    with torch.no_grad():
        assert psnr(adapter.decode(adapter.encode(x)), x).item() > 24  # README there: ~30 dB on 512 px crops


def test_forms_agree_for_sound_convolutions_and_transposed_ones():
    """The modulation is not image-specific: Conv1d and ConvTranspose1d (an audio decoder's upsampling) take the
    same per-input-channel scales, per sample (form a) and baked (form b)."""
    from torch import nn

    from genprint.modulation import Modulator, bake, select_convs

    torch.manual_seed(0)
    decoder = nn.Sequential(
        nn.Conv1d(8, 16, 7, padding=3),
        nn.ReLU(),
        nn.ConvTranspose1d(16, 16, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(16, 1, 7, padding=3),
    ).eval()
    names = select_convs(decoder, ["*"])
    assert names == ["0", "2", "4"]
    modulator = Modulator(decoder, names)
    scales = [1 + 0.3 * torch.randn(2, c) for c in modulator.channels]
    z = torch.randn(2, 8, 50)
    with torch.no_grad(), modulator.active(scales):
        per_sample = decoder(z)
    for i in range(2):
        with torch.no_grad():
            baked = bake(decoder, names, [s[i] for s in scales])(z[i : i + 1])
        assert (baked - per_sample[i : i + 1]).abs().max().item() < 1e-5
