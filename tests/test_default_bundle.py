"""The bundle genprint ships (genprint/models/default): what every verb uses without --model. Trained, so the tests
that need a trained model read it instead of training one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genprint.settings import default_bundle_dir


def test_the_shipped_bundle_is_small_safetensors_with_taef2s_license_its_calibration_and_verifies():
    from genprint import calibration
    from genprint.bundle import load_bundle

    folder = default_bundle_dir()
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert set(files) >= {"config.json", "LICENSE-TAEF2", calibration.FILE}
    weights = [name for name in files if name not in ("config.json", "LICENSE-TAEF2", calibration.FILE)]
    assert weights and all(name.endswith(".safetensors") for name in weights)
    assert sum(files.values()) < 16 * 2**20
    assert "MIT" in (folder / "LICENSE-TAEF2").read_text()
    model = load_bundle(folder)  # every file's hash checked against the config
    measured = calibration.load(folder)  # the null measured on this model, with enough queries to vouch for 1e-3
    assert measured["model_id"] == model.bundle_config["model_id"] and measured["null_queries"] >= 3000
    calibration.check_fpr(measured, 1e-3, strict=True, model_id=model.bundle_config["model_id"])


def test_render_then_extract_without_model_reads_the_code_back(tmp_path, capsys, caplog):
    """A held-out photo rendered with a user's code and read back by the CNN reader, no --model anywhere."""
    import logging

    from genprint.cli import main
    from genprint.data import load_rgb, resolve_photos, save_rgb, split
    from genprint.evaluation import centre_crop
    from genprint.fingerprint import from_hex, random_fingerprints, to_hex

    photos = tmp_path / "in"
    photos.mkdir()
    for p in split(resolve_photos(None), 0.2)[1][:4]:  # held out, 256 px centre crops as `genprint eval` reads them
        save_rgb(centre_crop(load_rgb(p, 8), 256), photos / f"{p.stem}.png")
    codes = [to_hex(c) for c in random_fingerprints(2, 48, rng=np.random.default_rng(11))]
    agreement = []
    with caplog.at_level(logging.INFO, logger="genprint.bundle"):
        for k, code in enumerate(codes):
            assert (
                main(["render", "--fingerprint", code, "--input", str(photos), "--output", str(tmp_path / f"o{k}")])
                == 0
            )
            capsys.readouterr()
            assert main(["extract", "--json", *map(str, sorted((tmp_path / f"o{k}").glob("*.png")))]) == 0
            for line in capsys.readouterr().out.splitlines():
                agreement.append((from_hex(json.loads(line)["fingerprint"]) == from_hex(code)).mean())
    assert sum("default bundle" in r.getMessage() for r in caplog.records) == 1  # said once, not per verb
    # the shipped bundle reads 0.972 of the bits of held-out 256 px crops (docs/results.md); chance is 0.5
    assert np.mean(agreement) >= 0.9, agreement


@pytest.mark.parametrize("verb", [["extract", "x.png"], ["eval", "--out", "o"]])
def test_a_missing_shipped_bundle_asks_for_model(tmp_path, monkeypatch, capsys, verb):
    from genprint import settings
    from genprint.cli import main

    monkeypatch.setattr(settings, "default_bundle_dir", lambda: tmp_path / "nothing")
    assert main(verb) == 2
    assert "pass --model" in capsys.readouterr().err
