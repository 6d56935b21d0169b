"""Framed decoding: a window decoded inside its context is exactly the whole framed decode's, at a fraction of its
cost, and training reads and prices only such windows."""

import numpy as np
import pytest
import torch
from PIL import Image

from genprint.config import load_config
from genprint.data import LatentBank
from genprint.errors import GenprintError
from genprint.framing import decoder_reach, framed, unframed
from genprint.generators.tae import tae_decoder
from genprint.training import Trainer


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return tae_decoder(latent_channels=4, width=8).eval()


def test_a_framed_window_is_the_whole_framed_decode_without_its_frame(decoder):
    """TAE decoders reach 145 px (10 convs at each of 1/8, 1/4, 1/2 resolution, 5 at full): a window decoded alone
    differs from the same window decoded in context, and the framed decode, trimmed stage by stage, equals the whole
    framed decode's window while its full-resolution stage runs on the window and a few px only."""
    assert decoder_reach(decoder, 8) == 145
    frame, window = 152, 6  # px, latent px
    pad = frame // 8
    latents = torch.randn(2, 4, window + 2 * pad, window + 2 * pad + 2)
    sizes = []
    last_upsample = [m for m in decoder.modules() if isinstance(m, torch.nn.Upsample)][-1]
    hook = last_upsample.register_forward_hook(lambda _m, _a, out: sizes.append(out.shape[-1]))
    with torch.no_grad():
        whole = decoder(latents)[..., frame:-frame, frame:-frame]
        with framed(decoder, frame, 8):
            inside = decoder(latents)
        alone = decoder(latents[..., pad:-pad, pad:-pad])
        with framed(decoder, frame, 8), unframed():  # as a whole image decodes, edges and all
            alone_inside = decoder(latents[..., pad:-pad, pad:-pad])
    hook.remove()
    assert torch.equal(alone_inside, alone)
    assert inside.shape == whole.shape == (2, 3, 48, 64)
    assert torch.allclose(inside, whole, atol=1e-5)
    assert (alone - whole).abs().amax() > 1e-3  # the decoder's zero padding reaches into a window decoded alone
    assert sizes[:2] == [8 * (window + 2 + 2 * pad), 8 * (window + 2) + 12]  # whole, then framed: the window + 2 x 6 px
    with pytest.raises(GenprintError, match="no window"), framed(decoder, frame, 8):
        decoder(torch.randn(1, 4, 2 * pad, 2 * pad))


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("framing-photos")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(out / f"p{i}.png")
    return out


def test_bank_windows_come_with_their_frame_and_lie_inside_the_photo(photo_dir):
    """The bank's framed windows: the window itself from inside the photo, its frame the photo's context where it has
    some and its reflection beyond. Latents here are each position's (row, column), so both can be read off."""

    def positions(image):
        h, w = image.shape[-2] // 8, image.shape[-1] // 8
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return torch.stack([rows, cols]).float()[None]

    bank = LatentBank(positions, sorted(photo_dir.iterdir()), 8, crop=32, frame=16)
    assert bank.window == 4 + 2 * 2
    for z in bank.sample(20):
        rows, cols = z[0, :, 0], z[1, 0, :]
        inner = rows[2:-2]
        assert inner.min() >= 0 and inner.max() <= 11 and torch.equal(torch.diff(inner), torch.ones(3))
        if cols[3] < cols[2]:  # a flipped window: flipped with its frame
            cols = cols.flip(0)
        expect = torch.tensor([abs(c) for c in range(int(cols[2]) - 2, int(cols[2]) + 6)]).float()
        expect = torch.where(expect > 15, 30 - expect, expect)  # reflection at either edge of a 16-column latent
        assert torch.equal(cols, expect)
    with pytest.raises(GenprintError, match="too wide"):
        LatentBank(positions, sorted(photo_dir.iterdir()), 8, crop=32, frame=96)


def test_training_with_a_frame_reads_and_prices_windows_decoded_inside_it(photo_dir):
    """decode_frame: the pool holds windows with their frame, the reader sees crop-size windows of what was decoded
    inside it, and the quality target is the original decoder's output of the same framed window. edge_quality also
    prices the coded windows decoded alone, which nothing reads, and the curriculum steers the lower PSNR."""
    cfg = {"holdout": 0.0, "complementary_pairs": True, "decode_frame": 16, "crop": 64, "reference_reuse": 2}
    cfg |= {"edge_quality": 1.0, "curriculum": {"smoothing": 1}}
    cfg = load_config("tiny", {**cfg, "precision": "fp32"})
    trainer = Trainer(cfg, photos=photo_dir)
    read = []
    forward = trainer.model.extractor.forward
    trainer.model.extractor.forward = lambda images: read.append(images) or forward(images)
    trainer.train_step()  # the mapping starts at no code; one update gives it one
    metrics = trainer.train_step()
    assert len(read) == 2 and 0 < metrics["edge_psnr"] < 100 and metrics["edge_psnr"] != metrics["psnr"]
    assert trainer.curriculum.psnr == min(metrics["psnr"], metrics["edge_psnr"])
    pool = trainer.targets[64]
    assert pool.latents.shape[-1] * 8 == 64 + 2 * 16 and [x.shape[-1] for x in pool.images] == [64, 64]
    with torch.no_grad():
        alone = trainer.model.decode_reference(pool.latents[:2, :, 2:-2, 2:-2])
        with framed(trainer.model.reference, 16, 8):
            inside = trainer.model.decode_reference(pool.latents[:2])
    in_frame, decoded_alone = (x[:2] for x in pool.images)  # both targets pooled with their window
    assert torch.allclose(in_frame, inside, atol=1e-5) and torch.allclose(decoded_alone, alone, atol=1e-5)
    assert (in_frame - alone).abs().amax() > 0.1
    before = pool.state_dict() | {"images": pool.images[0]}  # a checkpoint from before edge_quality: one target
    pool.load_state_dict(before)
    assert pool.latents is None  # refilled by the next step, both targets decoded
    assert read[0].shape[-1] == 64
    with pytest.raises(GenprintError, match="decode_frame"):
        load_config("tiny", {"decode_frame": 12})
    with pytest.raises(GenprintError, match="edge_quality needs a decode_frame"):
        load_config("tiny", {"edge_quality": 1.0})


def test_the_edge_term_prices_the_code_alone_under_weight_noise_and_code_shrink(photo_dir):
    """With weight noise both quality targets come from the original decoder under the same draws, so before the
    mapping has learned any code the windows decoded alone match theirs exactly; code_shrink (no pairs) leaves each
    window its own code there."""
    cfg = {"holdout": 0.0, "decode_frame": 16, "crop": 64, "edge_quality": 1.0, "precision": "fp32"}
    cfg |= {"weight_noise": 0.05, "code_shrink": 0.5, "attack_strength": 1.0, "attacks": {}}
    trainer = Trainer(load_config("tiny", cfg), photos=photo_dir)
    first = trainer.train_step()  # the mapping starts at no code: only the noise differs from a clean reference
    assert first["edge_psnr"] > 100 and first["psnr"] > 100
    assert 0 < trainer.train_step()["edge_psnr"] < 100  # one update later there is a code to price
