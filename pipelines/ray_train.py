"""Distributed joint fine-tuning on Ray Train around the core `genprint.training.Trainer`.

    genprint train --config tiny --workers 2 --storage s3://bucket/ray --name exp1 --out s3://bucket/bundles/exp1

Each worker runs one Trainer on its shard of the photos (rank/world_size) with the joint module wrapped in DDP
(gloo on CPU, NCCL on GPU); per-step metrics are averaged across workers. Every `checkpoint_every` steps every
worker writes its full state (`rank<R>.pt` + `.sha256`: model, optimizer, step, its own RNG streams) into one Ray
checkpoint under STORAGE/NAME, so a restarted worker group (FailureConfig) or a re-run with the same --name
continues exactly where the schedule left off. The last checkpoint also holds the bundle (save_bundle format),
which the driver copies to --out, evaluates, logs to MLflow and registers (alias `candidate`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from genprint.errors import GenprintError

log = logging.getLogger(__name__)
STATE_FILE = "rank{rank}.pt"
BUNDLE_DIR = "bundle"


# ----------------------------------------------------------------------------------------------- worker side
def _save_state(trainer, directory: Path, rank: int) -> None:
    from genprint.storage import SIDECAR, sha256_file

    path = directory / STATE_FILE.format(rank=rank)
    trainer.save_checkpoint(path)
    path.with_name(path.name + SIDECAR).write_text(sha256_file(path))


def _restore(trainer, checkpoint, rank: int) -> int:
    """Load this rank's state from a Ray checkpoint (rank 0's when the worker count changed); returns the step."""
    import torch

    from genprint.storage import SIDECAR, sha256_file

    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as d:
        own = Path(d) / STATE_FILE.format(rank=rank)
        path = own if own.exists() else Path(d) / STATE_FILE.format(rank=0)
        expected = path.with_name(path.name + SIDECAR)
        if not expected.exists() or sha256_file(path) != expected.read_text().strip():
            raise GenprintError(
                f"checkpoint {path} is corrupted (sha256 mismatch); delete it to resume from the one before"
            )
        state = torch.load(path, map_location=trainer.device, weights_only=True)
    if path != own:  # a new rank: keep its own data/bit/attack streams, take the shared weights and step
        fresh = trainer.state_dict()
        state.update({k: fresh[k] for k in ("bank", "bits_gen", "attacks", "targets", "size_gen")})
    trainer.load_state_dict(state)
    return trainer.step


def _mean_across_workers(metrics: dict[str, float], world: int, device) -> dict[str, float]:
    if world == 1:
        return metrics
    import torch
    import torch.distributed as dist

    names = sorted(metrics)
    values = torch.tensor([metrics[k] for k in names], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return {k: float(v) / world for k, v in zip(names, values.tolist())}


def train_loop(loop: dict) -> None:
    """The per-worker function TorchTrainer runs."""
    import ray.train
    import ray.train.torch

    from genprint.allocator import keep_freed_memory
    from genprint.config import TrainConfig
    from genprint.training import Trainer

    keep_freed_memory()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    config = TrainConfig(**loop["config"])
    device = ray.train.torch.get_device()
    trainer = Trainer(config, photos=loop["photos"], device=device, rank=rank, world_size=world)
    resumed_from = _restore(trainer, ray.train.get_checkpoint(), rank)
    if world > 1:
        trainer.wrap(lambda module: ray.train.torch.prepare_model(module, move_to_device=False))
        trainer.reduce = lambda metrics: _mean_across_workers(metrics, world, device)
    tracker = None
    if rank == 0 and loop.get("mlflow_run_id"):
        from pipelines.tracking import RunTracker

        tracker = RunTracker.attach(loop["mlflow_run_id"], loop["tracking_uri"])
    pending: list[tuple[int, dict]] = []
    started, first_step = time.perf_counter(), trainer.step
    while trainer.step < config.steps:
        metrics = trainer.train_step()  # averaged across workers (trainer.reduce)
        step = trainer.step
        pending.append((step, metrics))
        last = step == config.steps
        checkpoint_now = last or step % config.checkpoint_every == 0
        if not (checkpoint_now or step % config.log_every == 0):
            continue
        elapsed = time.perf_counter() - started
        report = {
            **metrics,
            "step": step,
            "resumed_from": resumed_from,
            "world_size": world,
            "steps_per_s": (step - first_step) / elapsed if elapsed else 0.0,
        }
        if rank == 0:  # progress: one line per report, forwarded to the driver's console by Ray
            print(
                f"[{loop['name']}] step {step}/{config.steps}  bit_acc {metrics['bit_acc']:.3f}  "
                f"psnr {metrics['psnr']:.1f} dB  "
                f"loss {metrics['loss']:.4f}  ({report['steps_per_s']:.2f} steps/s, {world} workers)",
                flush=True,
            )
        if tracker:
            for s, m in pending:
                tracker.log_metrics(m, s)
        pending.clear()
        if not checkpoint_now:
            ray.train.report(report)
            continue
        with tempfile.TemporaryDirectory() as d:
            _save_state(trainer, Path(d), rank)
            if last and rank == 0:
                trainer.save_bundle(Path(d) / BUNDLE_DIR, metrics={"final": metrics, "steps": step, "workers": world})
            ray.train.report(
                report, checkpoint=ray.train.Checkpoint.from_directory(d), checkpoint_dir_name=f"step-{step:07d}"
            )


# ----------------------------------------------------------------------------------------------- driver side
def ray_storage(storage: str):
    """(storage_path, pyarrow filesystem or None) for RunConfig; an s3:// bucket must exist."""
    from pyarrow import fs

    from pipelines.ray_runtime import location

    path, filesystem = location(storage)
    if filesystem is not None:
        bucket = path.split("/")[0]
        try:  # fail here with a clear message rather than deep inside Ray
            info = filesystem.get_file_info(bucket)
        except OSError as exc:
            raise GenprintError(f"cannot use {storage} for Ray checkpoints: {str(exc).splitlines()[0]}") from None
        if info.type == fs.FileType.NotFound:
            raise GenprintError(f"bucket {bucket!r} does not exist (Ray storage {storage})")
    return path, filesystem


def _deliver_bundle(bundle: Path, out: str) -> str:
    if out.startswith("s3://"):
        from genprint.storage import open_store

        open_store(out).put_dir(bundle)
        return out
    target = Path(out)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle, target)
    return str(target)


def train_distributed(
    config,
    *,
    name: str,
    out: str,
    storage: str,
    workers: int = 2,
    photos: str | None = None,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    max_failures: int = 2,
    track: bool = True,
    tracking_uri: str | None = None,
    register_alias: str | None = "candidate",
    eval_settings=None,
    ray_address: str | None = None,
) -> dict:
    """Run (or resume, for an existing `name` under `storage`) one distributed training; returns a summary dict."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.ray_runtime import RayRuntime

    if workers < 1:
        raise GenprintError(f"--workers must be at least 1, got {workers}")
    storage_path, filesystem = ray_storage(storage)
    settings = {
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "cpus_per_worker": cpus_per_worker,
        "storage": storage,
        "max_failures": max_failures,
        "out": out,
    }
    tracker = None
    if track:
        from pipelines.tracking import RunTracker
        from pipelines.tracking import tracking_uri as resolve_uri

        tracking_uri = resolve_uri(tracking_uri)
        tracker = RunTracker.start(name, {"train": config.to_dict(), "ray": settings}, tracking_uri)
    loop = {
        "name": name,
        "config": config.to_dict(),
        "photos": str(photos) if photos else None,
        "mlflow_run_id": tracker.run_id if tracker else None,
        "tracking_uri": tracking_uri,
    }
    use_gpu = gpus_per_worker > 0
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    started = time.time()
    try:
        with RayRuntime(ray_address, cpus=int(workers * cpus_per_worker + 0.999), dashboard=True):
            result = trainer.fit()
    except Exception as exc:
        if tracker:
            tracker.finish("FAILED")
        raise GenprintError(
            f"training run {name!r} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"re-run with --name {name} --storage {storage} to resume from its last checkpoint"
        ) from exc
    if result.checkpoint is None:
        raise GenprintError(f"training run {name!r} finished without a checkpoint")
    summary = {
        "name": name,
        "run_seconds": round(time.time() - started, 1),
        **{k: v for k, v in result.metrics.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(result.checkpoint.to_directory(str(Path(tmp) / "ckpt")))
        if not (local / BUNDLE_DIR / "config.json").exists():
            raise GenprintError(f"the last checkpoint of {name!r} ({result.checkpoint.path}) holds no bundle")
        summary["bundle"] = _deliver_bundle(local / BUNDLE_DIR, out)
        if tracker:
            _finish_tracking(tracker, local / BUNDLE_DIR, photos, eval_settings, register_alias, summary, Path(tmp))
    return summary


def _finish_tracking(tracker, bundle: Path, photos, eval_settings, register_alias, summary: dict, tmp: Path) -> None:
    history: dict[int, dict] = {}
    for key in ("loss", "bce", "mse", "bit_acc", "psnr", "ssim"):
        for m in tracker.client.get_metric_history(tracker.run_id, key):
            history.setdefault(m.step, {"step": m.step})[key] = m.value
    plots = [tracker.log_history_plot([history[s] for s in sorted(history)], tmp)] if history else []
    report = {"train": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}
    if eval_settings is not None:
        from genprint.bundle import load_bundle
        from genprint.evaluation import evaluate

        eval_dir = tmp / "eval"
        report["eval"] = evaluate(load_bundle(bundle), photos, eval_dir, eval_settings, progress=False)
        plots += sorted(eval_dir.glob("*.png"))
        tracker.log_metrics(
            {
                "eval_psnr_db": report["eval"]["quality"]["psnr_db"],
                "eval_bit_accuracy": report["eval"]["results"]["clean"]["bit_accuracy"],
            },
            summary.get("step", 0),
        )
    tracker.log_report(report, plots)
    if register_alias is not None:
        summary["registered"] = tracker.register_bundle(bundle, alias=register_alias)
    summary["mlflow_run_id"] = tracker.run_id
    tracker.finish()
