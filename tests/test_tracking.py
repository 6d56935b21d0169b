"""MLflow tracking + the two-model registry against a real SQLite-backed MLflow."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from genprint.bundle import load_bundle, read_config, save_bundle
from genprint.cli import main as cli_main
from genprint.errors import GenprintError
from pipelines import tracking
from pipelines.tracking import resolve_model


@pytest.fixture(scope="module")
def mlflow_env(tmp_path_factory):
    """A fresh SQLite tracking store + local artifact root + download cache, through the env vars users set."""
    root = tmp_path_factory.mktemp("mlflow")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "GENPRINT_ARTIFACT_ROOT": (root / "artifacts").as_uri(),
        "GENPRINT_CACHE": str(root / "cache"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def second_bundle(untrained_bundle_dir, tmp_path_factory):
    """Another bundle (different extractor weights, hence a different model_id)."""
    model = load_bundle(untrained_bundle_dir)
    with torch.no_grad():
        for p in model.extractor.parameters():
            p.add_(0.01)
    return save_bundle(model, tmp_path_factory.mktemp("second") / "bundle")


@pytest.fixture(scope="module")
def registered(mlflow_env, untrained_bundle_dir, second_bundle):
    """Two runs, each registering one bundle: versions 1 and 2 of both models."""
    out = []
    for i, bundle in enumerate((untrained_bundle_dir, second_bundle)):
        run = tracking.RunTracker.start(f"run-{i}", {"steps": 3, "model": {"nbits": 48}})
        for step in (1, 2, 3):
            run.log_metrics({"loss": 1.0 / step, "bit_acc": 0.5 + 0.1 * step, "note": "skipped"}, step)
        out.append((run, run.register_bundle(bundle)))
        run.finish()
    return out


def test_run_logs_config_metrics_report_and_plots(registered, mlflow_env, tmp_path):
    run, _ = registered[0]
    data = run.client.get_run(run.run_id).data
    assert data.params["steps"] == "3" and data.params["model.nbits"] == "48"
    history = run.client.get_metric_history(run.run_id, "bit_acc")
    assert [m.step for m in history] == [1, 2, 3] and history[-1].value == pytest.approx(0.8)
    assert "note" not in data.metrics
    plot = run.log_history_plot(
        [{"step": 1, "loss": 1.0, "psnr": 20.0}, {"step": 2, "loss": 0.5, "psnr": 25.0}], tmp_path
    )
    run.log_report({"bit_acc": 0.8}, [plot])
    names = {a.path for a in run.client.list_artifacts(run.run_id, "eval")}
    assert names == {"eval/report.json", "eval/training_curves.png"}
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_same_run_name_reopens_an_unfinished_run(mlflow_env):
    first = tracking.RunTracker.start("resumable", {"steps": 5})
    again = tracking.RunTracker.start("resumable", {"steps": 5})
    assert again.run_id == first.run_id
    first.finish()
    assert tracking.RunTracker.start("resumable", {"steps": 5}).run_id != first.run_id  # finished: a new run


def test_register_links_partners_and_resolves_to_the_same_bundle(registered, untrained_bundle_dir):
    run, versions = registered[0]
    assert versions == {tracking.GENERATOR_MODEL: "1", tracking.EXTRACTOR_MODEL: "1"}
    mlc = tracking.client()
    gen = mlc.get_model_version(tracking.GENERATOR_MODEL, "1")
    assert gen.tags["partner"] == f"{tracking.EXTRACTOR_MODEL}/1" and gen.tags["run_id"] == run.run_id
    model_id = read_config(untrained_bundle_dir)["model_id"]
    assert gen.tags["model_id"] == model_id
    local = resolve_model(f"models:/{tracking.GENERATOR_MODEL}/1")
    assert load_bundle(local).bundle_config["model_id"] == model_id
    for file in untrained_bundle_dir.iterdir():
        assert (local / file.name).read_bytes() == file.read_bytes()
    # the extractor side resolves to the very same pair
    assert resolve_model(f"models:/{tracking.EXTRACTOR_MODEL}/1") == local


def test_aliases_move_as_a_pair(registered):
    mlc = tracking.client()
    # the newest registration holds `candidate` on both halves
    assert str(mlc.get_model_version_by_alias(tracking.EXTRACTOR_MODEL, "candidate").version) == "2"
    assert cli_main(["models", "promote", f"models:/{tracking.EXTRACTOR_MODEL}/1", "production"]) == 0
    assert str(mlc.get_model_version_by_alias(tracking.GENERATOR_MODEL, "production").version) == "1"
    _, second = registered[1]
    bundle = resolve_model(f"models:/{tracking.GENERATOR_MODEL}@candidate")
    assert (
        read_config(bundle)["model_id"]
        == mlc.get_model_version(tracking.GENERATOR_MODEL, second[tracking.GENERATOR_MODEL]).tags["model_id"]
    )


def test_a_pair_that_was_not_trained_together_is_refused(registered):
    with pytest.raises(GenprintError, match="trained with genprint-extractor v2"):
        tracking.download_registered_bundle(
            f"models:/{tracking.GENERATOR_MODEL}/2", partner_uri=f"models:/{tracking.EXTRACTOR_MODEL}/1"
        )
    mlc = tracking.client()
    mlc.set_model_version_tag(
        tracking.GENERATOR_MODEL, "2", "partner", f"{tracking.EXTRACTOR_MODEL}/1"
    )  # a forged link
    try:
        with pytest.raises(GenprintError, match="not trained together"):
            resolve_model(f"models:/{tracking.GENERATOR_MODEL}/2")
        with pytest.raises(GenprintError, match="not trained together"):
            tracking.promote(mlc, tracking.GENERATOR_MODEL, "2", "production")
    finally:
        mlc.set_model_version_tag(tracking.GENERATOR_MODEL, "2", "partner", f"{tracking.EXTRACTOR_MODEL}/2")


def test_corrupted_registered_artifact_is_refused(registered, mlflow_env, tmp_path):
    mlc = tracking.client()
    ext = mlc.get_model_version(tracking.EXTRACTOR_MODEL, "2")
    model_id = ext.tags["model_id"]
    [stored] = list(
        (mlflow_env / "artifacts").rglob(f"registered/{model_id}/{tracking.EXTRACTOR_MODEL}/extractor.safetensors")
    )
    original = stored.read_bytes()
    stored.write_bytes(original[:-4] + b"\0\0\0\0")
    try:
        with pytest.raises(GenprintError, match="corrupted"):
            tracking.download_registered_bundle(f"models:/{tracking.EXTRACTOR_MODEL}/2", cache_dir=tmp_path)
    finally:
        stored.write_bytes(original)


def test_bad_references(mlflow_env, registered):
    for bad in ("models:/genprint-generator", "models:/other@production", "models:/genprint-generator@"):
        with pytest.raises(GenprintError):
            tracking.parse_model_uri(bad)
    with pytest.raises(GenprintError, match="not found"):
        resolve_model("models:/genprint-generator/99")
    with pytest.raises(GenprintError, match="not found"):
        resolve_model("models:/genprint-generator@production-old")


def test_models_cli(registered, capsys):
    assert cli_main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["genprint-generator", "v1", "production"],
        ["genprint-generator", "v2", "candidate"],
        ["genprint-extractor", "v1", "production"],
        ["genprint-extractor", "v2", "candidate"],
    ]
    assert cli_main(["models", "show", "models:/genprint-generator@candidate"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        info["version"] == "2"
        and info["partner"] == "genprint-extractor/2"
        and info["metrics"]["bit_acc"] == pytest.approx(0.8)
    )
    assert cli_main(["models", "show", "models:/genprint-generator/77"]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_main(["models", "fetch", "models:/genprint-extractor@candidate"]) == 0
    assert Path(capsys.readouterr().out.strip(), "extractor.safetensors").is_file()
