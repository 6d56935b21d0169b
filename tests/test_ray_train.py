"""Distributed training on a real local Ray cluster: DDP over 2 workers, a killed worker, a failed run resumed by
name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from genprint.bundle import load_bundle, read_config
from genprint.config import load_config
from genprint.errors import GenprintError
from genprint.storage import open_store

TINY = """\
nbits: 32
steps: 8
batch_size: 2
crop: 64
holdout: 0.2
mapping: {hidden: 32, depth: 1, scale_range: 0.3}
extractor: {width: 8, depth: 2, downsamples: 3}
checkpoint_every: 2
log_every: 1
threads: 1
"""


def _descendants(pid: int) -> list[int]:
    """Every live process below pid (from /proc), so we only ever touch the Ray workers this test started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _train_workers() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::RayTrainWorker"):
                pids.append(pid)
        except OSError:
            pass
    return pids


def _committed(read_snapshot) -> bool:
    """True once Ray Train has registered a checkpoint (its files alone may still be an unfinished report)."""
    try:
        text = read_snapshot()
    except Exception:  # not written yet: FileNotFoundError locally, NoSuchKey on S3
        return False
    return bool(text) and json.loads(text).get("latest_checkpoint_result") is not None


def _kill_one_worker_after(read_snapshot, timeout: float = 240) -> int:
    """Wait until the run has committed a checkpoint, then SIGKILL one of its training workers; returns its pid."""
    deadline = time.monotonic() + timeout
    while not _committed(read_snapshot):
        if time.monotonic() > deadline:
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.2)
    workers = _train_workers()
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    return workers[-1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Ray (short temp path), a SQLite MLflow, a tiny config and a few photos, shared by this module's runs."""

    from pipelines.ray_runtime import RayRuntime

    root = tmp_path_factory.mktemp("raytrain")
    photos = root / "photos"
    photos.mkdir()
    from genprint.settings import photos_dir

    if photos_dir() is None:
        pytest.skip("shared photos not found (set GENPRINT_SHARED)")
    for src in sorted(photos_dir().glob("*.png"))[:6]:
        (photos / src.name).write_bytes(src.read_bytes())
    (root / "tiny.yaml").write_text(TINY)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "GENPRINT_ARTIFACT_ROOT", "GENPRINT_RAY_TMP")}
    os.environ.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "GENPRINT_ARTIFACT_ROOT": (root / "art").as_uri(),
            "GENPRINT_RAY_TMP": f"/tmp/rt-{uuid.uuid4().hex[:6]}",
        }
    )
    with RayRuntime(cpus=2, dashboard=True):
        yield {"root": root, "photos": photos, "config": load_config(root / "tiny.yaml")}
    shutil.rmtree(os.environ["GENPRINT_RAY_TMP"], ignore_errors=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _run(env, name, **kw):
    from pipelines.ray_train import train_distributed

    kw.setdefault("storage", str(env["root"] / "ray"))
    kw.setdefault("out", str(env["root"] / "out" / name))
    return train_distributed(env["config"], name=name, workers=2, photos=str(env["photos"]), **kw)


def _run_in_thread(env, name, **kw):
    box = {}

    def target():
        try:
            box["summary"] = _run(env, name, **kw)
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


@pytest.fixture(scope="module")
def clean_run(env):
    """An uninterrupted 2-worker run: the schedule the interrupted ones must reproduce."""
    return _run(env, "clean")


@pytest.mark.slow
def test_uninterrupted_run_writes_a_registered_bundle(env, clean_run):
    assert clean_run["step"] == 8 and clean_run["world_size"] == 2 and clean_run["resumed_from"] == 0
    model = load_bundle(clean_run["bundle"])
    assert model.nbits == 32 and model.bundle_config["train"]["steps"] == 8
    assert model.bundle_config["metrics"]["workers"] == 2
    from pipelines import tracking

    mlc = tracking.client()
    gen = mlc.get_model_version(tracking.GENERATOR_MODEL, clean_run["registered"][tracking.GENERATOR_MODEL])
    assert gen.tags["model_id"] == model.bundle_config["model_id"] and "candidate" in gen.aliases
    assert [m.step for m in mlc.get_metric_history(clean_run["mlflow_run_id"], "bit_acc")] == list(range(1, 9))
    artifacts = {a.path for a in mlc.list_artifacts(clean_run["mlflow_run_id"], "eval")}
    assert {"eval/report.json", "eval/training_curves.png"} <= artifacts
    kept = sorted(p.name for p in (env["root"] / "ray" / "clean").glob("step-*"))
    assert kept == ["step-0000006", "step-0000008"]  # num_to_keep=2
    assert sorted(p.name for p in (env["root"] / "ray" / "clean" / "step-0000008").iterdir() if p.suffix == ".pt") == [
        "rank0.pt",
        "rank1.pt",
    ]


@pytest.mark.slow
def test_killed_worker_resumes_from_last_checkpoint_and_matches_the_schedule(env, clean_run):
    ckpts = env["root"] / "ray" / "fault"
    thread, box = _run_in_thread(env, "fault", max_failures=1, register_alias=None)
    _kill_one_worker_after(lambda: (ckpts / "checkpoint_manager_snapshot.json").read_text())
    thread.join(timeout=400)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    summary = box["summary"]
    assert summary["step"] == 8 and summary["resumed_from"] in (2, 4, 6)
    # same schedule: the resumed run ends in exactly the uninterrupted run's state
    for key in ("loss", "bit_acc", "psnr"):
        assert summary[key] == pytest.approx(clean_run[key], rel=1e-5), key
    assert read_config(summary["bundle"])["model_id"] == read_config(clean_run["bundle"])["model_id"]


@pytest.mark.slow
def test_failed_run_resumes_by_name_on_s3(env, clean_run, s3_bucket, s3_server):
    storage = f"s3://{s3_bucket}/ray"
    out = f"s3://{s3_bucket}/bundles/resumed"
    thread, box = _run_in_thread(env, "resumed", storage=storage, out=out, max_failures=0, register_alias=None)
    client = s3_server.client()
    _kill_one_worker_after(
        lambda: client.get_object(Bucket=s3_bucket, Key="ray/resumed/checkpoint_manager_snapshot.json")["Body"].read()
    )
    thread.join(timeout=400)
    assert isinstance(box.get("error"), GenprintError) and "--name resumed" in str(box["error"])
    summary = _run(env, "resumed", storage=storage, out=out, max_failures=0, register_alias=None)
    assert summary["step"] == 8 and summary["resumed_from"] in (2, 4, 6)
    local = open_store(out).get_dir("", env["root"] / "fetched")
    assert read_config(local)["model_id"] == read_config(clean_run["bundle"])["model_id"]
    from pipelines import tracking

    runs = tracking.client().search_runs([tracking.experiment_id(tracking.client())], "tags.mlflow.runName = 'resumed'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the re-run continued the failed MLflow run


def test_bad_storage_and_worker_count(s3_bucket, tmp_path):
    from pipelines.ray_train import ray_storage, train_distributed

    with pytest.raises(GenprintError, match="bucket 'genprint-missing-bucket' does not exist"):
        ray_storage("s3://genprint-missing-bucket/ray")
    path, fs = ray_storage(f"s3://{s3_bucket}/ray")
    assert path == f"{s3_bucket}/ray" and fs is not None
    with pytest.raises(GenprintError, match="at least 1"):
        train_distributed(_tiny_config(tmp_path), name="x", out=str(tmp_path / "o"), storage=str(tmp_path), workers=0)


def _tiny_config(tmp_path):
    (tmp_path / "c.yaml").write_text(TINY)
    return load_config(tmp_path / "c.yaml")
