"""Audio (issue 31): the waveform decoder through the same modulation, bundle and training as images; sound files,
the speech corpus, the attacks and the reader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from genprint.audio import RATE
from genprint.audio.attacks import AudioTrainAttacks, attack_suite, codec_round_trip
from genprint.audio.extractor import MIN_SAMPLES, AudioExtractor, make_audio_extractor
from genprint.audio.quality import perceptual, snr, stft_distance
from genprint.audio.signals import load_audio, save_audio, synthetic_voice
from genprint.errors import GenprintError
from genprint.generators import build_adapter
from genprint.generators.wavae import save_codec
from genprint.model import GenprintModel

SPEC = {"family": "wavae", "width": 32}


def audio_model(nbits: int = 16) -> GenprintModel:
    torch.manual_seed(0)
    model = GenprintModel.create(build_adapter(SPEC), nbits, extractor={"modality": "audio"})
    for affine in model.mapping.affines:  # a trained mapping's scales are not all 1
        torch.nn.init.normal_(affine.weight, std=0.2)
    return model.eval()


def test_forms_agree_and_the_export_reproduces_the_per_sample_output(tmp_path):
    from genprint.weights import read_decoder, recover_logits

    model = audio_model()
    bits = torch.tensor([[1, 0] * 8, [0, 1, 1, 0] * 4], dtype=torch.float32)
    latents = torch.randn(2, 16, 40)
    with torch.no_grad():
        per_sample = model.decode(latents, bits)
        assert per_sample.shape == (2, 1, 40 * 64)
        for k in range(2):
            baked = model.bake(bits[k])
            torch.testing.assert_close(model.adapter.decode(latents[k : k + 1], decoder=baked), per_sample[k : k + 1])
        model.adapter.export_native(model.bake(bits[1]), tmp_path / "export")
        leaked = read_decoder(model, tmp_path / "export")
        again = build_adapter(SPEC).decoder
        again.load_state_dict(leaked)
        torch.testing.assert_close(model.adapter.decode(latents[1:], decoder=again), per_sample[1:])
    # white-box: the export's weights give its code back
    assert ((recover_logits(model, leaked) > 0) == bits[1].numpy().astype(bool)).all()


def test_audio_latents_of_the_wrong_layout_are_refused():
    with pytest.raises(GenprintError, match=r"\(batch, 16, t\)"):
        audio_model().decode(torch.randn(1, 16, 4, 4), torch.zeros(1, 16))


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_sound_files_round_trip_at_genprints_rate(tmp_path, suffix):
    import soundfile

    wave = synthetic_voice(0.5)
    save_audio(wave, tmp_path / f"a{suffix}")
    back = load_audio(tmp_path / f"a{suffix}")
    assert back.shape == wave.shape
    assert float(snr(back[None], wave[None])) > 60  # 16-bit PCM: quantisation alone
    # another rate and two channels: resampled and mixed down on read
    soundfile.write(tmp_path / "b.wav", np.stack([wave[0].numpy()] * 2, 1)[::2], RATE // 2)
    assert load_audio(tmp_path / "b.wav").shape[-1] == pytest.approx(wave.shape[-1], abs=2)


def test_unreadable_sound_gets_one_clear_error(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(GenprintError, match="cannot read audio file"):
        load_audio(tmp_path / "bad.wav")
    with pytest.raises(GenprintError, match="not an audio file"):
        load_audio(tmp_path / "a.mp4")
    save_audio(torch.zeros(1, 10), tmp_path / "short.wav")
    with pytest.raises(GenprintError, match="shorter than"):
        load_audio(tmp_path / "short.wav", multiple=64)


@pytest.mark.parametrize("stages", [None, []], ids=["conv", "spectrum"])
def test_the_reader_ignores_loudness_and_length_but_refuses_too_short_clips(stages):
    reader = make_audio_extractor(16, stages=stages).eval()
    wave = synthetic_voice(1.0)[None]
    with torch.no_grad():
        torch.testing.assert_close(reader(wave * 0.3), reader(wave), rtol=1e-4, atol=1e-4)
        assert reader(wave[..., :MIN_SAMPLES]).shape == (1, 16)
    with pytest.raises(GenprintError, match="at least"):
        reader(wave[..., : MIN_SAMPLES - 1])
    with pytest.raises(GenprintError, match="frontend"):
        AudioExtractor(16, frontend="mel")
    with pytest.raises(GenprintError, match="frontend must be 'stft'"):
        make_audio_extractor(16, stages=[], frontend="wave")


def test_the_spectrum_reader_reads_the_frames_that_sound_not_the_silence_around_them():
    reader = make_audio_extractor(16, stages=[]).eval()
    wave = synthetic_voice(3.0)[None]
    with torch.no_grad():
        alone = reader(wave)
        padded = reader(torch.nn.functional.pad(wave, (RATE // 2, 2 * RATE)))  # 2.5 s of silence around 3 s of voice
    # only the frames at the voice's edges differ (mean and std over every frame: 0.44 here)
    assert (padded - alone).abs().max() < 0.1 * alone.abs().mean()


def test_spectrum_bundles_saved_before_pool_existed_are_read_over_every_frame_as_trained(tmp_path):
    import json

    from genprint.bundle import load_bundle, save_bundle

    torch.manual_seed(0)
    model = GenprintModel.create(build_adapter(SPEC), 16, extractor={"modality": "audio", "stages": []}).eval()
    bundle = save_bundle(model, tmp_path / "bundle")
    assert load_bundle(bundle).extractor.config["pool"] == "sounding"
    config = json.loads((bundle / "config.json").read_text())
    del config["extractor"]["pool"]  # as written before the option
    (bundle / "config.json").write_text(json.dumps(config))
    legacy = load_bundle(bundle).extractor
    wave = torch.nn.functional.pad(synthetic_voice(1.0)[None], (0, RATE))
    with torch.no_grad():
        planes = legacy._front(wave)
        every = legacy.head(torch.cat([planes.mean(-1), planes.std(-1, correction=0)], 1))
        assert legacy.config["pool"] == "every"
        torch.testing.assert_close(legacy(wave), every)
        assert not torch.allclose(model.extractor(wave), every)
    with pytest.raises(GenprintError, match="pool must be one of"):
        make_audio_extractor(16, stages=[], pool="loud")


def test_every_evaluation_attack_changes_the_sound_and_keeps_it_readable():
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is missing: scripts/dev.sh installs it from Debian")
    wave = torch.cat([synthetic_voice(1.0, seed=s)[None] for s in range(2)])
    for name, attack in attack_suite().items():
        out = attack(wave)
        assert out.shape[:2] == (2, 1) and out.shape[-1] >= MIN_SAMPLES, name
        assert torch.isfinite(out).all(), name
        if out.shape == wave.shape:
            assert not torch.equal(out, wave), name
    # a lossy codec keeps the sound close, not identical
    mp3 = codec_round_trip(wave, "mp3", 64)
    assert 5 < float(snr(mp3, wave).mean()) < 60


def test_training_attacks_are_seeded_and_grow_with_strength():
    wave = torch.cat([synthetic_voice(1.0, seed=s)[None] for s in range(4)])
    config = {name: {"p": 1.0} for name in ("noise", "lowpass", "gain", "echo")}
    a, b = AudioTrainAttacks(config, seed=3), AudioTrainAttacks(config, seed=3)
    torch.manual_seed(0)
    first = a(wave)
    torch.manual_seed(0)
    torch.testing.assert_close(b(wave), first)
    assert torch.equal(a(wave, strength=0.0), wave)
    with pytest.raises(GenprintError, match="unknown audio training attacks"):
        AudioTrainAttacks({"jpeg": {"p": 1}})


def test_quality_measures_rank_a_small_change_above_a_large_one():
    wave = synthetic_voice(1.0)[None]
    small, large = wave + 0.001 * torch.randn_like(wave), wave + 0.05 * torch.randn_like(wave)
    assert float(snr(small, wave)) > float(snr(large, wave)) + 20
    assert float(stft_distance(small, wave)) < float(stft_distance(large, wave))
    close, far = perceptual(small, wave), perceptual(large, wave)
    assert close["pesq"] > far["pesq"] and close["stoi"] >= far["stoi"]


def test_the_speech_corpus_holds_out_voices_and_sentences(tmp_path, monkeypatch):
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: scripts/dev.sh installs it from Debian")
    from genprint.audio import speech

    train, held = speech.speech_clips("train", 2, root=tmp_path), speech.speech_clips("held_out", 2, root=tmp_path)
    assert all(load_audio(p).shape[-1] > RATE // 2 for p in train + held)
    voices = speech.voices()
    assert not set(voices[: -speech.HELD_OUT_VOICES]) & set(voices[-speech.HELD_OUT_VOICES :])
    assert not set(speech.sentences(50, 1)) & set(speech.sentences(50, 2))


def test_a_few_training_steps_on_sound_save_a_bundle_that_loads(tmp_path):
    import json

    from genprint.bundle import load_bundle
    from genprint.config import load_config
    from genprint.training import Trainer

    save_codec(build_adapter(SPEC), tmp_path / "codec.safetensors")
    clips = tmp_path / "clips"
    for s in range(4):  # the learning curve reads 2 s of each held-out clip
        save_audio(synthetic_voice(2.5, seed=s), clips / f"{s}.wav")
    overrides = {
        "generator": {**SPEC, "source": str(tmp_path / "codec.safetensors")},
        "nbits": 32,
        "batch_size": 4,
        "crop": 8192,
        "holdout": 0.25,
        "attacks": {"noise": {"p": 0.5}, "crop": {"p": 0.5}},
        "attack_strength": 1.0,
        "validate_every": 3,
    }
    trainer = Trainer(load_config("audio-smoke", overrides), photos=clips)
    summary = trainer.run(3, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert np.isfinite(summary["loss"])
    # the learning curve reads the held-out clips (SNR for quality): one row at step 3
    (row,) = [json.loads(line) for line in (tmp_path / "ckpt" / "curve.jsonl").read_text().splitlines()]
    assert row["step"] == 3 and 0 <= row["held_out_bit_acc"] <= 1 and np.isfinite(row["held_out_psnr"])
    no_held_out = Trainer(load_config("audio-smoke", {**overrides, "holdout": 0.0}), photos=clips)
    with pytest.raises(GenprintError, match="held-out sound"):
        no_held_out.run(1, checkpoint_dir=tmp_path / "ckpt2", progress=False)
    bundle = trainer.save_bundle(tmp_path / "bundle")
    loaded = load_bundle(bundle)
    latents = torch.randn(1, 16, 128)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.decode(latents, torch.ones(1, 32)), trainer.model.decode(latents, torch.ones(1, 32))
        )
        assert loaded.extract(loaded.decode(latents, torch.ones(1, 32))).shape == (1, 32)


def test_render_extract_and_eval_take_sound_files_with_an_audio_bundle(tmp_path, capsys):
    import json

    from genprint.bundle import load_bundle, save_bundle
    from genprint.cli import main
    from genprint.fingerprint import random_fingerprints, to_hex

    model = audio_model(32)
    bundle = save_bundle(model, tmp_path / "bundle")
    for s in range(2):
        save_audio(synthetic_voice(1.5, seed=s), tmp_path / "in" / f"v{s}.wav")
    code = to_hex(random_fingerprints(1, 32, rng=np.random.default_rng(1))[0])
    args = [
        "--model",
        str(bundle),
        "--fingerprint",
        code,
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
    ]
    assert main(["render", *args]) == 0
    rendered = sorted((tmp_path / "out").glob("*.wav"))
    assert [p.name for p in rendered] == ["v0.wav", "v1.wav"]
    capsys.readouterr()
    assert main(["extract", "--model", str(bundle), "--json", *map(str, rendered)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    loaded = load_bundle(bundle)
    with torch.no_grad():
        expected = torch.sigmoid(loaded.extract(load_audio(rendered[0])[None]))[0]
    assert lines[0]["bit_probabilities"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert main(["extract", "--model", str(bundle), str(tmp_path / "in" / "missing.wav")]) != 0
    assert "cannot read audio file" in capsys.readouterr().err

    out = tmp_path / "eval"
    eval_args = ["--model", str(bundle), "--data", str(tmp_path / "in"), "--users", "100", "--photos", "2"]
    assert main(["eval", *eval_args, "--attacks", "noise_20db,mp3_64k", "--seconds", "1", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"clean", "noise_20db", "mp3_64k"} and report["test_clips"] == 2
    assert report["quality"]["snr_db"] < 60 and (out / "accuracy_per_attack.png").stat().st_size > 0
    assert report["settings"]["seconds"] == 1
    assert "s per clip" in capsys.readouterr().out
    assert main(["eval", *eval_args, "--seconds", "0.1", "--out", str(tmp_path / "e2")]) == 2
    assert "--seconds must be at least 0.256" in capsys.readouterr().err and not (tmp_path / "e2").exists()
    # clips shorter than the read are skipped, not padded with silence: here every clip lasts 1.5 s
    assert main(["eval", *eval_args, "--seconds", "2", "--out", str(tmp_path / "e3")]) == 2
    assert "lasts 2 s: read fewer seconds" in capsys.readouterr().err and not (tmp_path / "e3").exists()
    # the image evaluation's options mean nothing for sound: said, not silently ignored
    assert main(["eval", *eval_args, "--size", "64", "--samples-per-photo", "2", "--out", str(tmp_path / "e4")]) == 2
    err = capsys.readouterr().err
    assert "--size, --samples-per-photo: for image bundles" in err and not (tmp_path / "e4").exists()


def test_attribute_names_the_user_whose_code_a_sound_files_read_supports(tmp_path, capsys, monkeypatch):
    """`genprint attribute` takes WAV/FLAC with an audio bundle: the read is the torch reader's, the answer the
    registry's soft match against the users registered for that model; a file that is not sound gets its own error."""
    import json

    from genprint import evidence
    from genprint.bundle import load_bundle, save_bundle
    from genprint.cli import main
    from genprint.fingerprint import from_hex, pack

    monkeypatch.setenv("GENPRINT_DB", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.delenv("GENPRINT_API_KEY", raising=False)
    bundle = str(save_bundle(audio_model(32), tmp_path / "bundle"))
    assert main(["tenants", "create", "acme", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)["api_key"]
    assert main(["users", "register", "--count", "6", "--model", bundle, "--api-key", key, "--json"]) == 0
    codes = [json.loads(line)["fingerprint"] for line in capsys.readouterr().out.splitlines()]
    save_audio(synthetic_voice(1.5, seed=0), tmp_path / "in" / "v.flac")
    assert main(["render", "--model", bundle, "--fingerprint", codes[2], "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out")]) == 0  # fmt: skip
    rendered, not_sound = tmp_path / "out" / "v.wav", tmp_path / "notes.txt"  # render writes WAV
    not_sound.write_text("not sound")
    capsys.readouterr()
    assert main(["attribute", "--model", bundle, "--json", str(rendered), str(not_sound)]) == 2
    answer, refused = map(json.loads, capsys.readouterr().out.splitlines())
    with torch.no_grad():
        logits = load_bundle(bundle).extract(load_audio(rendered)[None]).numpy()[0]
    words = pack(np.stack([from_hex(c) for c in codes]))
    assert answer["extracted"] == "".join(f"{b:02x}" for b in np.packbits((logits > 0).astype(np.uint8)))
    assert answer["fingerprint"] == codes[int(evidence.scores(words, logits).argmax())] and answer["rule"] == "soft"
    assert answer["attributed"] == (answer["p_value"] <= 1e-6)
    assert refused["path"] == str(not_sound) and "not an audio file" in refused["error"]
