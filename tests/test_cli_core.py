"""The core CLI contract: render / extract / export / eval on a real bundle, and one clear error line on bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

GENPRINT = [sys.executable, "-m", "genprint"]


def run(*args, ok=True):
    proc = subprocess.run([*GENPRINT, *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def error_line(proc):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("genprint ")]
    assert len(lines) == 1 and "error:" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from genprint.data import resolve_photos

    out = tmp_path_factory.mktemp("in")
    for p in resolve_photos(None)[:2]:
        Image.open(p).convert("RGB").crop((0, 0, 100, 90)).save(out / f"{p.stem}.png")  # not multiples of 8
    return out


def test_render_extract_export(untrained_bundle_dir, images, tmp_path):
    hexfp = "a1" * 6
    proc = run(
        "render",
        "--model",
        untrained_bundle_dir,
        "--fingerprint",
        hexfp,
        "--input",
        images,
        "--output",
        tmp_path / "fp",
    )
    assert "cropped to 96x88" in proc.stdout
    outs = sorted((tmp_path / "fp").glob("*.png"))
    assert [p.stem for p in outs] == sorted(p.stem for p in images.glob("*.png"))
    assert Image.open(outs[0]).size == (96, 88)
    run("render", "--model", untrained_bundle_dir, "--no-fingerprint", "--input", images, "--output", tmp_path / "orig")

    big = tmp_path / "big.png"
    Image.fromarray((np.random.default_rng(0).random((80, 72, 3)) * 255).astype(np.uint8)).save(big)
    proc = run("extract", "--model", untrained_bundle_dir, "--json", big, outs[0])
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(big), str(outs[0])]
    assert all(len(r["fingerprint"]) == 12 and len(r["bit_probabilities"]) == 48 for r in rows)
    # The identity mapping gives the inversion reader no code to fit: every bit stays at probability 0.5.
    proc = run(
        "extract", "--model", untrained_bundle_dir, "--json", "--reader", "inversion", "--inversion-steps", 2, big
    )
    row = json.loads(proc.stdout)
    assert row["path"] == str(big) and row["bit_probabilities"] == [0.5] * 48

    proc = run("export", "--model", untrained_bundle_dir, "--fingerprint", hexfp, "--out", tmp_path / "export")
    assert (tmp_path / "export" / "taef2_decoder.safetensors").exists()


def test_bad_input_gives_one_clear_line(untrained_bundle_dir, images, tmp_path):
    assert "12 hex digits" in error_line(
        run(
            "render",
            "--model",
            untrained_bundle_dir,
            "--fingerprint",
            "abcd" * 4,
            "--input",
            images,
            "--output",
            tmp_path / "x",
            ok=False,
        )
    )
    assert "not hexadecimal" in error_line(
        run("export", "--model", untrained_bundle_dir, "--fingerprint", "zz" * 6, "--out", tmp_path / "x", ok=False)
    )
    assert "not a genprint bundle" in error_line(run("extract", "--model", tmp_path, "--json", "x.png", ok=False))
    notimg = tmp_path / "notes.png"
    notimg.write_text("hello")
    # every verb reads images through genprint.imageio: its formats, size limits and messages
    assert "not a PNG, JPEG or WebP image" in error_line(
        run("extract", "--model", untrained_bundle_dir, "--json", notimg, ok=False)
    )
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (40, 40)).save(tiny)
    assert "minimum of 64 px" in error_line(run("extract", "--model", untrained_bundle_dir, "--json", tiny, ok=False))
    assert "minimum of 64 px" in error_line(
        run("extract", "--model", untrained_bundle_dir, "--json", "--reader", "inversion", tiny, ok=False)
    )
    upright = tmp_path / "upright.png"
    Image.new("RGB", (64, 64)).save(upright)
    assert "max_rotation must be 0 to 180" in error_line(
        run(
            "extract",
            "--model",
            untrained_bundle_dir,
            "--json",
            "--reader",
            "inversion",
            "--max-rotation",
            -5,
            upright,
            ok=False,
        )
    )
    assert "unknown attacks ['jpeg_5']" in error_line(
        run("eval", "--model", untrained_bundle_dir, "--out", tmp_path / "e", "--attacks", "jpeg_50,jpeg_5", ok=False)
    )
    assert "--photos must be at least 1" in error_line(
        run("eval", "--model", untrained_bundle_dir, "--out", tmp_path / "e", "--photos", 0, ok=False)
    )
    assert "--escalate-p: must be a probability between 0 and 1, got '2'" in error_line(
        run("attribute", "--model", untrained_bundle_dir, "--reader", "cascade", "--escalate-p", 2, upright, ok=False)
    )
    assert "not a directory" in error_line(
        run(
            "render",
            "--model",
            untrained_bundle_dir,
            "--no-fingerprint",
            "--input",
            tmp_path / "missing",
            "--output",
            tmp_path / "y",
            ok=False,
        )
    )
    assert "no config file" in error_line(run("train", "--config", "nope", "--out", tmp_path / "z", ok=False))
    old = tmp_path / "old"
    shutil.copytree(untrained_bundle_dir, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg["format"] = 0
    (old / "config.json").write_text(json.dumps(cfg))
    assert "bundle format 0" in error_line(run("extract", "--model", old, "--json", tiny, ok=False))


def small_eval(bundle, out, photos: int, *more):
    """`genprint eval` on a few 64 px crops against 500 users."""
    return run(
        "eval",
        "--model",
        bundle,
        "--users",
        500,
        "--out",
        out,
        "--size",
        64,
        "--samples-per-photo",
        1,
        "--photos",
        photos,
        *more,
    )


def test_eval_writes_report_and_plots(untrained_bundle_dir, tmp_path):
    """On an untrained bundle every metric is at chance: the report must say so, and attribute nobody."""
    proc = small_eval(untrained_bundle_dir, tmp_path, 5, "--suites", "stable_signature")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["test_photos"] == 5 and report["samples"] == 5
    assert (tmp_path / "accuracy_per_attack.png").stat().st_size > 10_000 and (tmp_path / "grid.png").exists()
    assert report["quality"]["psnr_db"] > 60  # identity mapping: fingerprinted == original
    assert 0.35 < report["results"]["clean"]["bit_accuracy"] < 0.65
    assert report["results"]["clean"]["attribution_accuracy"] == 0
    assert all(v["attributed"] == 0 for v in report["false_positives"].values())
    assert report["decision"]["max_distance"] >= 0 and "jpeg_50" in report["results"]
    assert "samples read by the cnn reader from" in proc.stdout
    assert report["decision"]["calibration"] is None and "no calibration.json" in proc.stdout


def test_eval_without_attacks_reads_clean_images_and_false_positives_only(untrained_bundle_dir, tmp_path):
    small_eval(untrained_bundle_dir, tmp_path, 3, "--attacks", "none")
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["results"]) == ["clean"] and report["settings"]["attacks"] == []
    assert {k: v["queries"] for k, v in report["false_positives"].items()} == {"photos": 3, "original_decoder": 3}


def test_train_with_workers_hands_its_options_and_overrides_to_ray_train(monkeypatch):
    import pipelines.ray_train
    from genprint.cli import main

    seen = {}

    def fake_train_distributed(config, **kwargs):
        seen.update(config=config, **kwargs)
        return {"name": kwargs["name"]}

    monkeypatch.setattr(pipelines.ray_train, "train_distributed", fake_train_distributed)
    assert (
        main(
            [
                "train",
                "--config",
                "tiny",
                "--out",
                "o",
                "--workers",
                "2",
                "--steps",
                "5",
                "--checkpoints",
                "s3://b/ckpt",
                "--set",
                "lr=2e-3",  # YAML 1.1 would make this a string
                "--set",
                "extractor.margin=8",
                "--ray-address",
                "auto",
                "--gpus-per-worker",
                "1",
            ]
        )
        == 0
    )
    assert (seen["storage"], seen["workers"], seen["ray_address"], seen["gpus_per_worker"]) == (
        "s3://b/ckpt",
        2,
        "auto",
        1,
    )
    assert (
        seen["config"].steps == 5
        and seen["config"].lr.at(0) == 0.002
        and seen["config"].extractor == {"width": 16, "depth": 4, "downsamples": 2, "margin": 8}
    )
    assert main(["train", "--config", "tiny", "--out", "o", "--set", "lr"]) == 2  # not KEY=VALUE: one clear error


def test_registry_commands_are_quiet_unless_asked(tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    quiet = run("tenants", "create", "acme", "--db", db)
    assert "alembic" not in quiet.stderr and "INFO" not in quiet.stderr, quiet.stderr
    loud = run("-v", "tenants", "list", "--db", db)
    assert "alembic" in loud.stderr  # the migration notes are there for whoever asks


def test_extract_and_render_check_every_input_before_writing(untrained_bundle_dir, tmp_path):
    """One image loader for every verb: a header claiming 50,000 x 50,000 px is refused before decoding, and a bad
    image among good ones leaves no output written."""
    import io
    import struct
    import zlib

    def claiming(width: int, height: int) -> bytes:
        """A real PNG whose header claims another size: readers see the size before any pixel."""
        buf = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buf, format="PNG")
        data = bytearray(buf.getvalue())
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        return bytes(data)

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(claiming(50_000, 50_000))
    assert "decompression bomb" in error_line(run("extract", "--model", untrained_bundle_dir, "--json", bomb, ok=False))
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray((np.random.default_rng(1).random((64, 72, 3)) * 255).astype(np.uint8)).save(folder / name)
    (folder / "c.png").write_bytes(claiming(5_000, 5_000))  # 25 Mpx: over the 4096 x 4096 limit
    out = tmp_path / "out"
    line = error_line(
        run("render", "--model", untrained_bundle_dir, "--no-fingerprint", "--input", folder, "--output", out, ok=False)
    )
    assert "c.png" in line and "exceeds the limit" in line
    assert not out.exists() or not any(out.iterdir())  # nothing written: the bad input was found first


def test_bundles_are_verified_written_whole_and_schema_checked(untrained_bundle_dir, tmp_path):
    from genprint.bundle import load_bundle, read_config, save_bundle

    bundle = tmp_path / "b"
    shutil.copytree(untrained_bundle_dir, bundle)
    config = json.loads((bundle / "config.json").read_text())
    assert set(config["files"]) >= {"decoder", "reference_decoder", "mapping", "extractor"}
    # weights that are not what config.json records do not load, and attribute says so (exit 2)
    (bundle / "extractor.safetensors").write_bytes(b"garbage")
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64)).save(good)
    for argv in (("extract", "--model", bundle, "--json", good), ("attribute", "--model", bundle, good)):
        assert "does not match the sha256" in error_line(run(*argv, ok=False))
    (bundle / "extractor.safetensors").unlink()
    assert "is missing from the bundle" in error_line(
        run("export", "--model", bundle, "--fingerprint", "00" * 6, "--out", tmp_path / "x", ok=False)
    )
    # a model_id that is not the files' digest (say, one that walks out of the ONNX cache) is refused
    for field, value, message in (
        ("model_id", "../../escape", "not the digest"),
        ("nbits", "48", "mistyped fields"),
        ("extractor", None, "mistyped fields"),
    ):
        broken = tmp_path / f"bad-{field}"
        shutil.copytree(untrained_bundle_dir, broken)
        (broken / "config.json").write_text(json.dumps({**config, field: value}))
        assert message in error_line(run("extract", "--model", broken, "--json", good, ok=False))
    # a save replaces an old bundle in one rename: never the old config with the new weights
    model = load_bundle(untrained_bundle_dir)
    target = tmp_path / "saved"
    save_bundle(model, target)
    first = read_config(target)["model_id"]
    with torch_no_grad():
        for affine in model.mapping.affines:
            affine.weight.add_(0.1)
    save_bundle(model, target)
    assert read_config(target)["model_id"] != first and load_bundle(target).bundle_config["model_id"] != first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".saved")) == []  # no staging left behind


def torch_no_grad():
    import torch

    return torch.no_grad()


def test_calibrate_measures_the_null_and_attribute_says_what_it_can_vouch_for(untrained_bundle_dir, tmp_path):
    from genprint.data import resolve_photos, split

    bundle = tmp_path / "b"
    shutil.copytree(untrained_bundle_dir, bundle)
    run("calibrate", "--model", bundle, "--null-images", 30, "--users", 200)
    report = json.loads((bundle / "calibration.json").read_text())
    assert report["null_queries"] == 30 and set(report["kinds"]) == {"photos", "original_decoder", "another_model"}
    assert report["supported_fpr"] == pytest.approx(0.1) and report["attributed_at"]["1e-06"] == 0
    train, held_out = split(resolve_photos(None), 0.2)
    assert held_out and report["photos"] == f"{len(train)} photos of the training split"  # held-out stay unseen
    proc = small_eval(bundle, tmp_path / "e", 1, "--attacks", "none")
    calibrated = json.loads((tmp_path / "e" / "report.json").read_text())["decision"]["calibration"]
    assert calibrated == {"null_queries": 30, "supported_fpr": pytest.approx(0.1), "vouches_for_fpr": False}
    assert "30 null queries cannot vouch for the soft rule at FPR 1e-06" in proc.stdout
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(image)
    db = ("--db", f"sqlite:///{tmp_path / 'r.db'}")
    line = error_line(run("attribute", "--model", bundle, "--fpr", "1e-6", "--strict-fpr", image, *db, ok=False))
    assert "below what 30 null queries can vouch for" in line
    warned = run("attribute", "--model", bundle, "--fpr", "1e-6", image, *db, ok=False)
    assert "below what 30 null queries" in warned.stderr  # said, not refused, without --strict-fpr
