"""The inversion reader reads a code back by re-creating the image through the fingerprinted decoder."""

import numpy as np
import pytest
import torch

from genprint.data import load_rgb, resolve_photos
from genprint.errors import GenprintError
from genprint.fingerprint import random_fingerprints
from genprint.generators import load_adapter_source
from genprint.inversion import InversionReader
from genprint.model import GenprintModel
from genprint.paths import taef2_dir
from test_modulation_export import randomise_mapping


@pytest.fixture(scope="module")
def model():
    if taef2_dir() is None:
        pytest.skip("shared TAEF2 weights not found (set GENPRINT_SHARED)")
    torch.manual_seed(0)  # a linear mapping with small weights, as training leaves it (37 dB on these crops)
    return randomise_mapping(GenprintModel.create(load_adapter_source("taef2", taef2_dir()), 32, mapping={"depth": 0}), std=0.05)


def test_reads_the_code_of_fingerprinted_photos_and_leaves_the_weights_alone(model):
    photos = torch.stack([load_rgb(p)[:, :64, :64] for p in resolve_photos(None)[:3]])
    bits = random_fingerprints(3, model.nbits, rng=np.random.default_rng(0))
    with torch.no_grad():
        latents = model.encode(photos)
        marked, unmarked = model.decode(latents, bits), model.decode_reference(latents)
    reader = InversionReader(model, steps=60)
    read_marked, read_unmarked = reader.logits(marked), reader.logits(unmarked)
    assert ((read_marked > 0) == bits).mean() >= 0.85  # measured 0.90 at 40 steps
    # Without a fingerprint the fit has no code to find: it stays near 0, far from the +-1 of a real one.
    assert np.abs(read_unmarked).mean() < 0.5 * np.abs(read_marked).mean()
    assert all(p.grad is None for p in model.parameters())
    assert np.array_equal(reader.bits(marked[0]), reader.bits(marked[:1]))  # one (3, H, W) image reads like a batch of one


def test_bad_input_and_settings_are_refused(model):
    with pytest.raises(GenprintError, match="at least 64 px"):
        InversionReader(model, steps=1).logits(torch.rand(1, 3, 32, 64))
    with pytest.raises(GenprintError, match="shape"):
        InversionReader(model, steps=1).logits(torch.rand(2, 64, 64))
    with pytest.raises(GenprintError, match="steps must be >= 1"):
        InversionReader(model, steps=0)


def test_a_crop_off_the_decoders_grid_is_put_back_on_it(model):
    photo = load_rgb(resolve_photos(None)[3])[:, :256, :256]  # at 128 px the phase was found for 2 of 3 photos
    with torch.no_grad():
        made = model.decode_reference(model.encode(photo[None]))  # on the grid, as every generated image is
        crop = made[..., 3:3 + 181, 5:5 + 179]                     # an upload cropped 3 rows and 5 columns in
        aligned = InversionReader(model, steps=1)._aligned(crop)
    assert aligned.shape[-2:] == (168, 168)
    assert torch.equal(aligned, crop[..., 5:5 + 168, 3:3 + 168])    # back in phase: 3 + 5 and 5 + 3 rows/columns are multiples of 8
