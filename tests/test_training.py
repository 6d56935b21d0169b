"""The joint training loop: it learns what it is told to, checkpoints resume exactly, configs are validated."""

import json
import shutil

import numpy as np
import pytest
import torch

from genprint.attacks import TrainAttacks
from genprint.attacks.ops import jpeg_approx
from genprint.attacks.suite import attack_suite, from_pil, jpeg
from genprint.config import CONFIG_DIR, Ramp, Schedule, TrainConfig, load_config
from genprint.errors import GenprintError
from genprint.extractor import Extractor
from genprint.training import Trainer, media


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from genprint.data import resolve_photos

    src = resolve_photos(None)[:4]
    out = tmp_path_factory.mktemp("photos")
    for p in src:
        shutil.copy(p, out / p.name)
    return out


def params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


@pytest.mark.parametrize(
    "hardening", [{}, {"weight_noise": 0.2}, {"code_shrink": 0.5}], ids=["plain", "weight_noise", "code_shrink"]
)
def test_resume_reproduces_an_uninterrupted_run(photos, tmp_path, hardening):
    cfg = load_config("tiny", {"holdout": 0.0, **hardening})
    straight = Trainer(cfg, photos=photos)
    straight.run(steps=6, progress=False)

    first = Trainer(cfg, photos=photos)
    first.run(steps=3, checkpoint_dir=tmp_path, progress=False)
    resumed = Trainer(cfg, photos=photos)  # a new process would start exactly like this
    resumed.run(steps=6, checkpoint_dir=tmp_path, progress=False)
    assert resumed.step == 6
    assert torch.equal(params(straight), params(resumed))
    assert not torch.equal(params(first), params(resumed))


def test_decoder_is_frozen_unless_its_learning_rate_is_set(photos):
    cfg = load_config("tiny", {"holdout": 0.0})
    trainer = Trainer(cfg, photos=photos)
    before = {k: v.clone() for k, v in trainer.model.decoder.state_dict().items()}
    trainer.run(steps=2, progress=False)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.decoder.state_dict().items())

    cfg = load_config("tiny", {"holdout": 0.0, "decoder_lr": 1e-4})
    trainer = Trainer(cfg, photos=photos)
    before = {k: v.clone() for k, v in trainer.model.decoder.state_dict().items()}
    trainer.run(steps=2, progress=False)
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.decoder.state_dict().items())


def test_weight_noise_trains_through_noisy_weights_and_updates_clean_ones(photos):
    plain = Trainer(load_config("tiny", {"holdout": 0.0}), photos=photos)
    noisy = Trainer(load_config("tiny", {"holdout": 0.0, "weight_noise": 0.5}), photos=photos)
    before = {k: v.clone() for k, v in noisy.model.decoder.state_dict().items()}
    seen = [t.train_step() for t in (plain, noisy)]  # the same latents, codes and initial weights
    assert not torch.equal(params(plain), params(noisy))  # it learned from other images: the noisy decoder's
    # its quality target is the original decoder under the same draws, so the noise itself costs no quality
    assert seen[0]["psnr"] > 60 and seen[1]["psnr"] > 60
    assert all(torch.equal(before[k], v) for k, v in noisy.model.decoder.state_dict().items())  # frozen, restored
    with pytest.raises(GenprintError, match="weight_noise"):
        load_config("tiny", {"weight_noise": -0.1})


def test_code_shrink_reads_weaker_codes_and_only_draws_when_on(photos):
    plain = Trainer(load_config("tiny", {"holdout": 0.0}), photos=photos)
    shrunk = Trainer(load_config("tiny", {"holdout": 0.0, "code_shrink": 0.5}), photos=photos)
    noise_state = plain.noise_gen.get_state()
    # the same latents, codes and initial weights; the first step's scales are all 1, so the second shows it
    seen = [[t.train_step() for _ in range(2)][-1] for t in (plain, shrunk)]
    assert torch.equal(plain.noise_gen.get_state(), noise_state)  # off: no draw, runs as before
    assert seen[0]["loss"] != seen[1]["loss"] and not torch.equal(params(plain), params(shrunk))
    with pytest.raises(GenprintError, match="code_shrink"):
        load_config("tiny", {"code_shrink": 1.5})


def test_learning_rates_follow_their_schedules(photos):
    """`lr` is a schedule like `decoder_lr` (a cool-down at the end of a run); one held at 0 moves nothing."""
    cfg = load_config(
        "tiny",
        {
            "holdout": 0.0,
            "lr": {"start": 1e-2, "end": 0.0, "begin": 0, "finish": 2},
            "decoder_lr": {"start": 0.0, "end": 1e-4, "begin": 0, "finish": 2},
        },
    )
    trainer = Trainer(cfg, photos=photos)

    def mapping():
        return torch.cat([p.detach().flatten() for p in trainer.model.mapping.parameters()])

    seen = []
    for _ in range(3):
        before = mapping()
        trainer.train_step()
        groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
        seen.append((groups["fingerprint"], groups["decoder"], not torch.equal(before, mapping())))
    assert seen == [
        (pytest.approx(1e-2), 0.0, True),
        (pytest.approx(5e-3), pytest.approx(5e-5), True),
        (0.0, pytest.approx(1e-4), False),
    ]


def test_quality_loss_pulls_the_decoder_back_to_the_original(photos):
    """With only the quality term, fingerprinted output converges to the original decoder's."""
    cfg = load_config("tiny", {"holdout": 0.0, "bit_weight": 0.0, "quality_weight": 100.0, "lr": 1e-2})
    trainer = Trainer(cfg, photos=photos)
    with torch.no_grad():
        for a in trainer.model.mapping.affines:
            a.weight.normal_(0, 0.5)
    first = trainer.train_step()["psnr"]
    for _ in range(15):
        last = trainer.train_step()["psnr"]
    assert last > first + 3


def test_complementary_pairs_decode_each_crop_with_a_code_and_its_complement(photos):
    trainer = Trainer(load_config("tiny", {"holdout": 0.0, "complementary_pairs": True}), photos=photos)
    seen = []

    def spy(model):
        def forward(latents, bits, **kw):
            seen.append((latents.clone(), bits.clone()))
            return model(latents, bits, **kw)

        return forward

    trainer.wrap(spy)
    trainer.train_step()
    ((latents, bits),) = seen
    half = len(bits) // 2
    assert torch.equal(latents[:half], latents[half:]) and not torch.equal(latents[0], latents[1])
    assert torch.equal(bits[half:], 1 - bits[:half])


def test_drift_weight_keeps_each_pairs_mean_near_the_original_decoder(photos):
    """drift_weight prices what a code and its complement share: with it, the pairs' mean drifts less from the
    original decoder's output than without, under the same steps, codes and latents."""
    cfg = {"holdout": 0.0, "complementary_pairs": True, "decoder_lr": 1e-3, "mapping": {"scale_range": 0.5}}
    drifts = []
    for weight in (0.0, 10.0):
        trainer = Trainer(load_config("tiny", {**cfg, "drift_weight": weight}), photos=photos)
        for _ in range(12):
            trainer.train_step()
        latents, target = trainer.targets[trainer.config.crops[0]].sample(4)
        bits = torch.randint(0, 2, (4, trainer.config.nbits), generator=torch.Generator().manual_seed(0)).float()
        trainer.model.eval()
        with torch.no_grad():
            mean = (trainer.model.decode(latents, bits) + trainer.model.decode(latents, 1 - bits)) / 2
        drifts.append(torch.nn.functional.mse_loss(mean, target).item())
    assert drifts[1] < 0.5 * drifts[0]
    with pytest.raises(GenprintError, match="drift_weight"):
        load_config("tiny", {"drift_weight": 1.0})  # no pairs to take the mean of


def test_read_jitter_decodes_larger_windows_and_reads_them_at_random_offsets(photos, tmp_path):
    """The reader sees `crop`-px windows cut at any offset from decodes `read_jitter` px larger; a checkpoint without
    jitter resumes with it (its reference pools refilled at the new size)."""
    plain = Trainer(load_config("tiny", {"holdout": 0.0, "reference_reuse": 2}), photos=photos)
    plain.train_step()
    plain.save_checkpoint(tmp_path / "last.pt")
    trainer = Trainer(load_config("tiny", {"holdout": 0.0, "reference_reuse": 2, "read_jitter": 16}), photos=photos)
    trainer.load_state_dict(torch.load(tmp_path / "last.pt", weights_only=True))
    read, decoded = [], []
    forward = trainer.model.extractor.forward
    trainer.model.extractor.forward = lambda images: read.append(images.detach()) or forward(images)
    trainer.wrap(lambda model: lambda latents, bits, **kw: decoded.append(latents.shape) or model(latents, bits, **kw))
    for _ in range(3):
        trainer.train_step()
    assert all(shape[-1] * 8 == 80 for shape in decoded) and all(x.shape[-2:] == (64, 64) for x in read)
    with torch.no_grad():
        full = trainer.model.decode(trainer.targets[64].latents[:1], torch.zeros(1, 32))
    assert full.shape[-1] == 80
    with pytest.raises(GenprintError, match="read_jitter"):
        load_config("tiny", {"read_jitter": 12})


def test_read_band_shows_the_reader_no_code_at_the_decoders_edges(photos):
    """With read_band the reader's view carries the original decoder's output within the band (the same for a code and
    its complement) and the fingerprinted decode inside it; the band passes no gradient back to the decoder."""
    cfg = {"holdout": 0.0, "complementary_pairs": True, "read_band": 16, "crop": 96}
    trainer = Trainer(load_config("tiny", cfg), photos=photos)
    for affine in trainer.model.mapping.affines:  # a code that shows (a new mapping is the identity)
        torch.nn.init.normal_(affine.weight, std=0.1)
    read = []
    forward = trainer.model.extractor.forward
    trainer.model.extractor.forward = lambda images: read.append(images) or forward(images)
    trainer.train_step()
    (seen,) = read
    code, complement = seen.detach().chunk(2)
    inside = np.s_[..., 16:-16, 16:-16]
    band = torch.ones(seen.shape[-2:], dtype=torch.bool)
    band[16:-16, 16:-16] = False
    assert torch.equal(code[..., band], complement[..., band])
    assert (code[inside] - complement[inside]).abs().amax() > 1e-3
    decoded = torch.rand(2, 3, 96, 96, requires_grad=True)
    trainer._banded(decoded, torch.rand(2, 3, 96, 96), then=lambda x: x).sum().backward()
    assert torch.equal(decoded.grad[..., band], torch.zeros(2, 3, int(band.sum()))) and bool(decoded.grad[inside].all())
    with pytest.raises(GenprintError, match="read_band"):
        load_config("tiny", {"read_band": 32})  # a 64 px crop would be all band


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(GenprintError, match="unknown settings"):
        load_config("tiny", {"stepz": 3})
    with pytest.raises(GenprintError, match="multiple of 8"):
        load_config("tiny", {"nbits": 44})
    with pytest.raises(GenprintError, match="even batch_size"):
        load_config("tiny", {"complementary_pairs": True, "batch_size": 5})
    with pytest.raises(GenprintError, match="no config file"):
        load_config("nope")
    exponent = tmp_path / "exponent.yaml"
    exponent.write_text("lr: 3e-4\ndecoder_lr: {start: 0, end: 1E-5, begin: 0, finish: 10}\n")
    read = load_config(exponent)
    assert (read.lr.at(0), read.decoder_lr.at(10)) == (3e-4, 1e-5)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(GenprintError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(GenprintError, match="unknown training attacks"):
        TrainAttacks({"teleport": {"p": 1}})


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_config_loads_with_its_reader_and_curriculum(name):
    from genprint.extractor import make_extractor
    from genprint.training import media

    config = load_config(name)  # parses the schedules and the curriculum
    reader = make_extractor(config.nbits, config.extractor)
    media(config.extractor.get("modality", "image")).attacks(config.attacks, seed=0)  # unknown attack names fail
    assert config.name == name and reader.config["nbits"] == config.nbits


def test_dotted_overrides_change_one_entry_and_plain_ones_replace_the_setting():
    tiny = load_config("tiny").extractor
    assert load_config("tiny", {"extractor.margin": 8}).extractor == {**tiny, "margin": 8}
    assert load_config("tiny", {"extractor": {"margin": 8}}).extractor == {"margin": 8}
    attacks = load_config("default").attacks
    changed = load_config("default", {"attacks.noise.p": 0.5}).attacks  # two levels down, the rest kept
    assert changed == {**attacks, "noise": {**attacks["noise"], "p": 0.5}} and attacks["noise"]["p"] != 0.5
    overrides = {"extractor": {"margin": 8}, "extractor.width": 4}
    assert load_config("tiny", overrides).extractor == {"margin": 8, "width": 4}
    assert overrides["extractor"] == {"margin": 8}  # the caller's values are not changed
    with pytest.raises(GenprintError, match="cannot set crop.size: crop is 64, not a mapping"):
        load_config("tiny", {"crop.size": 3})


def test_ramps():
    r = Ramp(0.0, 10.0, 100, 200)
    assert [r.at(s) for s in (0, 100, 150, 200, 999)] == [0.0, 0.0, 5.0, 10.0, 10.0]
    assert Ramp(3.0, 3.0).at(5) == 3.0


def test_schedules_chain_ramps_and_survive_a_round_trip():
    """In, hold, down: a quality weight ramped in, then lowered at the end of a run."""
    ramps = [
        {"start": 0.0, "end": 100.0, "begin": 100, "finish": 200},
        {"start": 100.0, "end": 20.0, "begin": 500, "finish": 600},
    ]
    cfg = load_config("tiny", {"quality_weight": ramps, "lr": 0.01})
    steps = (0, 150, 300, 500, 550, 600, 10_000)
    assert [cfg.quality_weight.at(s) for s in steps] == [0.0, 50.0, 100.0, 100.0, 60.0, 20.0, 20.0]
    assert cfg.quality_weight.peak() == 100.0 and cfg.lr.at(123) == 0.01
    again = TrainConfig(**cfg.to_dict())  # how Ray Train's workers and bundles carry the config
    assert again.to_dict() == cfg.to_dict() and again.to_dict()["quality_weight"] == ramps
    assert again.quality_weight.at(550) == 60.0
    assert cfg.cut_short(600) == [] and cfg.cut_short(550) == ["quality_weight (60 of 20)"]
    cooling = load_config(
        "tiny", {"lr": {"start": 3e-3, "end": 3e-4, "begin": 4500, "finish": 5250}, "decoder_lr": 1e-4}
    )
    assert cooling.cut_short(5000) == ["lr (0.0012 of 0.0003)"] and cooling.cut_short(5250) == []
    assert Schedule.parse({"start": 1, "end": 2, "begin": 3, "finish": 4}, "x").to_config() == {
        "start": 1,
        "end": 2,
        "begin": 3,
        "finish": 4,
    }
    with pytest.raises(GenprintError, match="step order"):
        load_config("tiny", {"quality_weight": list(reversed(ramps))})
    with pytest.raises(GenprintError, match="a ramp takes start, end, begin, finish"):
        load_config("tiny", {"lr": [{"start": 1, "stop": 2}]})
    for bad in ([], "fast", True, [3.0]):
        with pytest.raises(GenprintError, match="must be a number, a ramp"):
            load_config("tiny", {"decoder_lr": bad})


def test_training_attacks_keep_shape_and_gradients():
    x = torch.rand(6, 3, 64, 64, requires_grad=True)
    attacks = TrainAttacks(
        {
            name: {"p": 1.0}
            for name in (
                "crop",
                "resize",
                "rotation",
                "blur",
                "noise",
                "brightness",
                "contrast",
                "saturation",
                "jpeg",
                "erasing",
            )
        },
        max_per_sample=3,
    )
    y = attacks(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_jpeg_approximation_tracks_real_jpeg():
    from genprint.data import load_rgb, resolve_photos

    x = load_rgb(resolve_photos(None)[0], 8)[:, :128, :128]
    real = from_pil(jpeg(50)(__import__("genprint.attacks.suite", fromlist=["to_pil"]).to_pil(x), None))
    approx = jpeg_approx(x[None], 50)[0]
    err_approx = (approx - real).abs().mean().item()
    err_none = (x - real).abs().mean().item()
    assert err_approx < err_none  # closer to the real codec than doing nothing


def test_evaluation_suites_cover_the_issue():
    names = {a.name for a in attack_suite()}
    for needed in (
        "crop_keep_10pct",
        "resize_50pct",
        "rotation_25",
        "jpeg_50",
        "sharpness_2.0",
        "jpeg80_brightness1.5_crop50",
        "crop_pad_10pct",
        "rotation_30",
        "blur_k7",
        "noise_0.2",
        "erasing_0.2",
        "combined_level5",
    ):
        assert needed in names
    x = torch.rand(3, 96, 96)
    for attack in attack_suite():
        y = attack(x, seed=1)
        assert y.shape[0] == 3 and min(y.shape[1:]) >= 64 and 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize(
    "config, stride",
    [({"width": 8, "depth": 6, "highpass": True}, 4), ({"highpass": True, "margin": 8, "stages": [[8, 1]] * 4}, 8)],
    ids=["plain", "stages-margin"],
)
def test_extractor_reads_any_size_as_whole_cells_of_its_stride(config, stride):
    """A side that is not a multiple of the stride would leave a last feature row half on zero padding, and pooling
    mixes it into every bit: the reader trims it (bottom and right), so such a size reads like the trimmed image."""
    torch.manual_seed(0)
    extractor = Extractor(32, **config).eval()
    assert extractor.stride == stride
    images = torch.rand(2, 3, 99, 91)
    trimmed_h, trimmed_w = 99 // stride * stride, 91 // stride * stride
    inside = images.clone()
    inside[..., 40:42, 40:42] = 1
    with torch.no_grad():
        assert torch.equal(extractor(images), extractor(images[..., :trimmed_h, :trimmed_w]))
        assert not torch.allclose(extractor(inside), extractor(images), atol=1e-4)


@pytest.mark.parametrize(
    "extractor",
    [
        {"width": 16, "depth": 4, "downsamples": 2, "highpass": True},
        {"width": 16, "depth": 4, "downsamples": 2, "highpass": True, "residual": True},
        {"highpass": True, "margin": 8, "stages": [[8, 1], [16, 2]]},
    ],
    ids=["highpass", "residual", "stages-margin"],
)
def test_highpass_extractor_trains_and_round_trips_through_a_bundle(photos, tmp_path, extractor):
    """Also through ONNX: the residual reader re-renders images inside the exported graph, at any size; the margin is
    cut from each input's own size."""
    from genprint.bundle import load_bundle
    from genprint.readers import ExtractorRuntime, export_extractor

    residual = extractor.get("residual", False)
    trainer = Trainer(load_config("tiny", {"holdout": 0.0, "extractor": extractor}), photos=photos)
    trainer.run(steps=2, progress=False)
    trainer.save_bundle(tmp_path / "bundle")
    loaded = load_bundle(tmp_path / "bundle").eval()
    trainer.model.eval()
    images = torch.rand(2, 3, 83, 70)
    with torch.no_grad():
        expected = trainer.model.extract(images)
        assert torch.allclose(loaded.extract(images), expected, atol=1e-6)
        if residual:  # the re-rendering is read: with the image as its own reference, the logits change
            trainer.model.extractor.attach_reference(lambda x: x, 8)
            assert not torch.allclose(trainer.model.extract(images), expected, atol=1e-3)
    assert loaded.extractor.config == trainer.model.extractor.config
    assert torch.equal(loaded.extractor.highpass_kernels, trainer.model.extractor.highpass_kernels)
    runtime = ExtractorRuntime(export_extractor(loaded.extractor, tmp_path / "extractor.onnx"))
    np.testing.assert_allclose(runtime.logits(images), expected.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        runtime.logits(images[:1, :, :64, :72]),
        loaded.extract(images[:1, :, :64, :72]).detach().numpy(),
        atol=1e-4,
        rtol=0,
    )


def test_residual_extractor_needs_its_reference():
    with pytest.raises(GenprintError, match="residual needs highpass"):
        Extractor(32, residual=True)
    with pytest.raises(GenprintError, match="no reference autoencoder"):
        Extractor(32, highpass=True, residual=True)(torch.rand(1, 3, 64, 64))


def test_extractor_margin_ignores_the_borders_and_keeps_small_images_readable():
    torch.manual_seed(0)
    extractor = Extractor(32, width=8, depth=2, highpass=True, residual=True, margin=16).eval()
    extractor.attach_reference(lambda x: 0.5 * x, 8)
    images = torch.rand(2, 3, 128, 112)
    framed = images.clone()
    framed[..., :16, :] = framed[..., -16:, :] = framed[..., :, :16] = framed[..., :, -16:] = (
        0  # a crop-and-pad attack's black frame
    )
    inside = images.clone()
    inside[..., 40:50, 40:50] = 1
    with torch.no_grad():
        assert torch.equal(extractor(framed), extractor(images))
        assert not torch.allclose(extractor(inside), extractor(images), atol=1e-3)
        # Both read the same inner 48 px (config.INTERIOR): 80 px leave room for two grid cells a side, 64 px for one.
        assert torch.equal(extractor(images[..., :80, :80]), extractor(images[..., 8:72, 8:72]))
        assert extractor(images[..., :64, :64]).shape == (2, 32)
    with pytest.raises(GenprintError, match="multiple of the decoder's grid"):
        Extractor(32, highpass=True, residual=True, margin=4).attach_reference(lambda x: x, 8)
    with pytest.raises(GenprintError, match="at least 80 px"):
        load_config("tiny", {"crop": 72, "extractor": {"width": 8, "depth": 2, "margin": 16}})


@pytest.mark.slow
def test_smoke_training_raises_bit_accuracy_well_above_chance():
    """The `smoke` recipe, on photos it never trained on: bits read above chance at the quality target by its CNN,
    and nearly all of them by the inversion reader."""
    from genprint.data import load_rgb, resolve_photos, split
    from genprint.evaluation import centre_crop, crop_metrics, held_out_crops
    from genprint.fingerprint import random_fingerprints
    from genprint.inversion import InversionReader

    cfg = load_config("smoke")
    trainer = Trainer(cfg)
    trainer.run(progress=False)
    accuracy, quality = crop_metrics(trainer.model, *held_out_crops(trainer.model, cfg, samples=128, seed=1))
    # 128 x 48 bits: chance is 0.5 +- 0.0064, so 0.57 is eleven standard deviations above it (measured: 0.604 at
    # 33.7 dB).
    assert accuracy >= 0.57, accuracy
    assert quality >= 32.0, quality

    model = trainer.model.eval()
    photos = torch.stack([centre_crop(load_rgb(p, 8), 256) for p in split(resolve_photos(None), cfg.holdout)[1][:2]])
    bits = random_fingerprints(2, cfg.nbits, rng=np.random.default_rng(3))
    with torch.no_grad():
        marked = model.decode(model.encode(photos), bits)
    read = InversionReader(model, steps=50).bits(marked)
    assert (read == bits).mean() >= 0.9, (
        read == bits
    ).mean()  # measured with `genprint eval --reader inversion`: docs/results.md


def test_curriculum_lowers_the_learning_rates_with_the_quality_target():
    from genprint.curriculum import Curriculum, CurriculumConfig

    config = CurriculumConfig.parse(
        {
            "smoothing": 1,
            "quality_lr_factor": 0.1,
            "cooldown_factor": 0.5,
            "quality": {"gate": 0.8, "steps": 2},
            "attacks": {"gate": 0.8, "steps": 1},
            "cooldown": {"steps": 2},
        }
    )
    c = Curriculum(config)
    factors = [c.lr_factor]
    for step in range(1, 6):
        c.update(0.9, 40.0, step)  # at the gate and over the target: every stage advances each step
        factors.append(c.lr_factor)
    assert factors == pytest.approx([1, 0.1**0.5, 0.1, 0.1, 0.075, 0.05])
    with pytest.raises(GenprintError, match="positive lr factors"):
        CurriculumConfig.parse({"quality_lr_factor": 0})


def test_curriculum_advances_only_while_the_stream_reads_above_its_gate():
    from genprint.curriculum import Curriculum, CurriculumConfig

    config = CurriculumConfig.parse(
        {
            "smoothing": 1,
            "psnr": [20, 30],
            "psnr_lag": 1.0,
            "weight_rate": 0.1,
            "quality": {"gate": 0.8, "steps": 4},
            "attacks": {"gate": 0.9, "steps": 2},
            "cooldown": {"steps": 2},
        }
    )
    c = Curriculum(config)
    for step in range(1, 4):
        c.update(0.7, 25.0, step)  # under the gate: nothing moves
    assert (c.stage, c.psnr_target, c.attack_strength, c.lr_factor) == ("quality", 20, 0, 1)
    c.update(0.85, 25.0, 4)
    c.update(0.85, 26.0, 5)  # target 25: within the lag of 26
    assert c.psnr_target == 25
    c.update(0.85, 26.0, 6)  # target 27.5: 26 trails it by more than the lag, so it waits for the stream
    c.update(0.85, 26.0, 7)
    assert c.psnr_target == 27.5
    c.update(0.85, 30.0, 8)
    assert (c.stage, c.psnr_target, c.finished_at) == ("attacks", 30, {"quality": 8})
    c.update(0.85, 30.0, 9)  # above quality's gate, under the attacks'
    assert c.attack_strength == 0
    for step in range(10, 14):
        c.update(0.95, 30.0, step)
    assert c.stage is None and c.attack_strength == 1 and c.lr_factor == pytest.approx(config.cooldown_factor)
    # The quality weight is steered to the PSNR target: it rises while the stream is under it and falls while over.
    weight = c.quality_weight
    c.update(0.95, 20.0, 14)
    assert c.quality_weight == pytest.approx(weight * np.exp(0.1 * (30 - 20)))
    c.update(0.95, 40.0, 15)
    assert c.quality_weight == pytest.approx(weight)
    again = Curriculum(config)
    again.load_state_dict(c.state_dict())
    assert again.summary() == c.summary()


def test_quality_weight_holds_while_the_code_is_under_its_gate():
    """No wind-up: a stream squeezed under the gate stops the weight rising (it may still fall) until it recovers;
    under the least quality the recipe accepts (psnr[0]) it rises all the same."""
    from genprint.curriculum import Curriculum, CurriculumConfig

    c = Curriculum(CurriculumConfig.parse({"smoothing": 1, "psnr": [20, 30], "weight_rate": 0.1}))
    c.progress["quality"] = 1.0  # the target at 30 dB; the attack stage's gate is 0.9 as well
    c.update(0.95, 25.0, 1)  # at the gate (0.9), under the target: the weight rises
    risen = c.quality_weight
    assert risen == pytest.approx(np.exp(0.5))
    for step in range(2, 50):
        c.update(0.6, 25.0, step)  # under the gate and still under the target: it holds
    assert c.quality_weight == risen
    c.update(0.6, 35.0, 50)  # over the target: it falls even under the gate
    assert c.quality_weight == pytest.approx(1.0)
    c.update(0.95, 25.0, 51)
    assert c.quality_weight == pytest.approx(risen)
    c.update(0.6, 19.0, 52)  # under the gate but under psnr[0]: it rises
    assert c.quality_weight == pytest.approx(risen * np.exp(1.1))
    old = c.state_dict()
    del old["psnr"]  # a checkpoint written before the smoothed PSNR was state
    again = Curriculum(c.config)
    again.load_state_dict(old)
    again.update(0.95, 29.5, 53)
    assert again.psnr == 29.5


def test_bad_curricula_and_precisions_are_refused():
    with pytest.raises(GenprintError, match="drop them from the config"):
        load_config("tiny", {"curriculum": {}, "quality_weight": 10.0})
    with pytest.raises(GenprintError, match="gate in"):
        load_config("tiny", {"curriculum": {"quality": {"gate": 2.0}}})
    with pytest.raises(GenprintError, match="curriculum: .*unexpected keyword"):
        load_config("tiny", {"curriculum": {"psnr_start": 20}})
    with pytest.raises(GenprintError, match="precision must be one of"):
        load_config("tiny", {"precision": "fp8"})
    with pytest.raises(GenprintError, match="match no decoder module"):
        Trainer(load_config("tiny", {"decoder_lr": 1e-4, "decoder_frozen": ["no.such.*"]}))


@pytest.mark.parametrize(
    "overrides",
    [
        {"reference_reuse": 2, "precision": "bf16", "crop": [64, 96], "decode_frame": 16},
        {"curriculum": {"psnr": [0.0, 0.0], "quality": {"gate": 0.0, "steps": 2}}, "validate_every": 2},
    ],
    ids=["pooled-framed-targets-bf16", "curriculum"],
)
def test_resume_reproduces_an_uninterrupted_run_with_pooled_targets_and_a_curriculum(photos, tmp_path, overrides):
    """The target pool and the curriculum are state: a resumed run continues both exactly."""
    cfg = load_config("tiny", {"holdout": 0.5, "complementary_pairs": True, **overrides})
    straight = Trainer(cfg, photos=photos)
    straight.run(steps=6, checkpoint_dir=tmp_path / "straight", progress=False)
    Trainer(cfg, photos=photos).run(steps=3, checkpoint_dir=tmp_path / "split", progress=False)
    resumed = Trainer(cfg, photos=photos)
    resumed.run(steps=6, checkpoint_dir=tmp_path / "split", progress=False)
    assert torch.equal(params(straight), params(resumed))
    if straight.curriculum is not None:
        assert resumed.curriculum.summary() == straight.curriculum.summary() and straight.curriculum.stage != "quality"
        rows = [json.loads(line) for line in (tmp_path / "split" / "curve.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [2, 3, 4, 6]
        assert all(0 <= r["held_out_bit_acc"] <= 1 and 0 <= r["held_out_framed_bit_acc"] <= 1 for r in rows)


def test_training_ends_when_the_curriculum_has_run_all_its_stages(photos, tmp_path):
    """`steps` is an upper bound: a run whose curriculum is done stops there, checkpoint and curve row included."""
    stages = {name: {"gate": 0.0, "steps": 2} for name in ("quality", "attacks", "cooldown")}
    cfg = load_config("tiny", {"holdout": 0.5, "curriculum": {"psnr": [0.0, 0.0], **stages}, "validate_every": 100})
    trainer = Trainer(cfg, photos=photos)
    trainer.run(steps=50, checkpoint_dir=tmp_path, progress=False)
    assert trainer.step == 6 and trainer.curriculum.summary()["stage"] == "done"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 6
    assert [json.loads(line)["step"] for line in (tmp_path / "curve.jsonl").read_text().splitlines()] == [6]
    again = Trainer(cfg, photos=photos)  # resuming a finished run trains no further
    again.run(steps=50, checkpoint_dir=tmp_path, progress=False)
    assert again.step == 6 and torch.equal(params(again), params(trainer))


def test_init_starts_from_a_bundles_weights_and_refuses_another_architecture(photos, tmp_path):
    """`init` fine-tunes a trained bundle: its decoder, mapping and extractor, not TAEF2's and fresh ones; a bundle of
    another architecture is refused by name."""
    cfg = load_config("tiny", {"holdout": 0.0, "decoder_lr": 0.01})
    trained = Trainer(cfg, photos=photos)
    trained.run(steps=2, progress=False)
    trained.save_bundle(tmp_path / "bundle")
    started = Trainer(load_config("tiny", {"holdout": 0.0, "init": str(tmp_path / "bundle")}), photos=photos)
    assert torch.equal(params(started), params(trained))
    assert not torch.equal(params(Trainer(cfg, photos=photos)), params(trained))
    wider = {"holdout": 0.0, "init": str(tmp_path / "bundle"), "extractor": {**cfg.extractor, "width": 24}}
    with pytest.raises(GenprintError, match="init: the extractor of"):
        Trainer(load_config("tiny", wider), photos=photos)


def test_a_step_that_spans_a_pause_counts_as_a_slow_step():
    from collections import deque

    from genprint.training import counted_seconds

    recent = deque(maxlen=50)
    assert [counted_seconds(s, recent) for s in (0.5, 0.7, 0.6, 0.6, 0.6)] == [0.5, 0.7, 0.6, 0.6, 0.6]
    assert counted_seconds(600.0, recent) == 3.0  # a 10-minute stop in the middle of a 0.6 s step
    assert counted_seconds(1.5, recent) == 1.5  # a larger crop's step counts in full


def test_target_pool_reuses_each_reference_decode(photos):
    trainer = Trainer(
        load_config("tiny", {"holdout": 0.0, "batch_size": 4, "reference_reuse": 2, "precision": "fp32"}), photos=photos
    )
    decoded = []
    pool = trainer.targets[64]
    render = pool.reference
    pool.reference = lambda latents: decoded.append(len(latents)) or render(latents)
    latents, images = pool.sample(4)
    assert decoded == [64, 2]  # the pool (4 x 2 x 8) once, then batch / reuse fresh windows a step
    with torch.no_grad():
        assert torch.allclose(images, trainer.model.decode_reference(latents), atol=1e-5)
    pool.sample(4)
    assert decoded == [64, 2, 2]
    state = pool.state_dict()
    pool.load_state_dict(state | {"images": state["images"][0]})  # the format before edge_quality resumes as it was
    assert torch.equal(pool.images[0], state["images"][0]) and pool.latents is not None


def test_frozen_decoder_layers_stay_put(photos):
    trainer = Trainer(
        load_config("tiny", {"holdout": 0.0, "decoder_lr": 1e-3, "decoder_frozen": ["18.*", "19"]}), photos=photos
    )
    before = {k: v.clone() for k, v in trainer.model.decoder.state_dict().items()}
    trainer.run(steps=2, progress=False)
    after = trainer.model.decoder.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved and not moved & {"18", "19"}


def test_several_crop_sizes_share_a_step_budget(photos):
    """A list of crops: each step trains at one size, with as many pixels as the first size's batch."""
    cfg = load_config("tiny", {"holdout": 0.0, "batch_size": 16, "complementary_pairs": True, "crop": [64, 128, 256]})
    assert [cfg.batch_for(c) for c in cfg.crops] == [16, 4, 2]  # at least one complementary pair
    sound = load_config("audio", {"batch_size": 16, "crop": [16384, 32768, 65536]})
    assert [sound.batch_for(c, media("audio").dims) for c in sound.crops] == [16, 8, 4]  # samples: one dimension
    trainer = Trainer(cfg, photos=photos)
    seen = []

    def spy(model):
        def forward(latents, bits, **kw):
            seen.append(tuple(latents.shape[-2:]))
            return model(latents, bits, **kw)

        return forward

    trainer.wrap(spy)
    for _ in range(8):
        trainer.train_step()
    assert set(seen) == {(8, 8), (16, 16), (32, 32)}
    with pytest.raises(GenprintError, match="multiple of 8"):
        load_config("tiny", {"crop": [64, 100]})


def test_a_run_resumes_with_a_crop_size_added(photos, tmp_path):
    """Sizes the checkpoint has keep their reference pools; an added size starts its own."""
    Trainer(load_config("tiny", {"holdout": 0.0}), photos=photos).run(steps=2, checkpoint_dir=tmp_path, progress=False)
    wider = Trainer(load_config("tiny", {"holdout": 0.0, "crop": [64, 96]}), photos=photos)
    wider.run(steps=4, checkpoint_dir=tmp_path, progress=False)
    assert wider.step == 4 and set(torch.load(tmp_path / "last.pt", weights_only=False)["targets"]) == {64, 96}


def test_train_writes_its_bundle_beside_its_default_checkpoints_and_resumes_from_them(photos, tmp_path):
    from genprint.bundle import load_bundle
    from genprint.cli import main

    out = tmp_path / "bundle"  # no --checkpoints: they go to OUT/checkpoints, inside the folder the bundle replaces
    args = ["train", "--config", "tiny", "--data", str(photos), "--set", "holdout=0", "--out", str(out)]
    assert main([*args, "--steps", "3"]) == 0
    first = load_bundle(out).bundle_config["metrics"]
    assert first["steps"] == 3
    assert main([*args, "--steps", "6"]) == 0  # resumes at step 3 from the checkpoints the first bundle kept
    second = load_bundle(out).bundle_config["metrics"]
    assert second["steps"] == 6
    # training time adds up across the resume; wall time is each command's own
    seconds = [m["final_window"]["train_seconds"] for m in (first, second)]
    assert 0 < seconds[0] < seconds[1] and second["final_window"]["wall_seconds"] > 0
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 6


def test_a_time_limit_ends_the_run_after_the_step_in_flight_and_the_same_command_resumes(
    photos, tmp_path, capsys, caplog
):
    """--max-minutes (a leased machine's budget): the run stops as at a last step, checkpoint and bundle written."""
    from genprint.bundle import load_bundle
    from genprint.cli import main

    out = tmp_path / "bundle"
    args = ["train", "--config", "tiny", "--data", str(photos), "--set", "holdout=0", "--out", str(out)]
    with caplog.at_level("INFO", logger="genprint.training"):
        assert main([*args, "--steps", "50", "--max-minutes", "1e-9"]) == 0  # out of time after the first step
        assert load_bundle(out).bundle_config["metrics"]["steps"] == 1
        assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 1
        assert main([*args, "--steps", "3"]) == 0  # no limit: resumes from step 1 to the end
    assert load_bundle(out).bundle_config["metrics"]["steps"] == 3
    logged = caplog.text
    assert "out of time at step 1" in logged and "at step 1" in logged.split("resumed from")[1]
    capsys.readouterr()
    assert main([*args, "--steps", "5", "--max-minutes", "0"]) == 2
    assert main([*args, "--steps", "5", "--max-minutes", "1", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--max-minutes takes minutes above 0, got 0" in err and "with --workers a run ends at its steps" in err
    assert load_bundle(out).bundle_config["metrics"]["steps"] == 3  # refused before anything was touched


@pytest.mark.parametrize(("bf16_ms", "fp32_ms", "pays"), [(60, 100, True), (95, 100, False), (150, 80, False)])
def test_auto_precision_takes_bf16_only_where_it_measures_faster(monkeypatch, bf16_ms, fp32_ms, pays):
    """`precision: auto` times a conv step both ways: native bf16 alone does not make it faster on every CPU."""
    from genprint import training

    clock = [0.0]
    real_autocast = torch.autocast

    def autocast(device_type, dtype=None, enabled=True):  # each timed step costs its precision's milliseconds
        clock[0] += (bf16_ms if enabled else fp32_ms) / 1e3
        return real_autocast(device_type, dtype=dtype, enabled=enabled)

    monkeypatch.setattr(training.torch, "autocast", autocast)
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    training.bf16_pays.cache_clear()
    try:
        assert training.bf16_pays(torch.device("cpu")) is pays
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
        training.bf16_pays.cache_clear()
        assert training.bf16_pays(torch.device("cpu")) is False  # no native bf16: never timed, never taken
    finally:
        training.bf16_pays.cache_clear()
