"""genprint train: fine-tune a fingerprinted decoder, mapping network and extractor; writes a bundle.

The one training launcher: in this process, or with --workers on Ray Train (locally, or on a cluster with
--ray-address, as the Helm chart's RayJob runs it), tracked in MLflow and registered there."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="jointly fine-tune decoder, mapping network and extractor; writes a bundle", description=__doc__
    )
    p.add_argument("--config", required=True, help="config name (default, smoke, tiny) or YAML path")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config setting, YAML-valued; a dotted key changes one entry of a mapping and keeps the rest "
        "(lr=0.002, extractor.margin=8); a plain key replaces the whole setting",
    )
    p.add_argument("--steps", type=int, help="the run's last step (the same as --set steps=N)")
    p.add_argument("--data", help="folder of training photos (default: shared photos, else scikit-image's)")
    p.add_argument("--out", required=True, help="bundle directory to write (with --workers also s3://BUCKET/PREFIX)")
    p.add_argument(
        "--checkpoints",
        help="checkpoint folder (default OUT/checkpoints; with --workers Ray's storage, a folder or "
        "s3://, default $GENPRINT_HOME/ray_results); re-running resumes from it",
    )
    p.add_argument("--no-progress", action="store_true", help="one log line per window instead of a progress bar")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="stop training once this many minutes have passed since the command started, checkpointed as at a last "
        "step, then write the bundle (a leased machine's budget; the same command resumes); not with --workers",
    )
    ray = p.add_argument_group("distributed (Ray Train)")
    ray.add_argument("--workers", type=int, default=0, help="Ray Train workers, each a DDP rank (0: in this process)")
    ray.add_argument(
        "--gpus-per-worker", type=float, default=0, help="GPUs per worker (>0: NCCL on GPU; 0: gloo on CPU)"
    )
    ray.add_argument("--cpus-per-worker", type=float, default=1)
    ray.add_argument(
        "--name", help="run name; re-running with the same name resumes its last checkpoint (default CONFIG-OUTNAME)"
    )
    ray.add_argument("--ray-address", help="an existing Ray cluster ('auto' inside one) instead of a local Ray")
    ray.add_argument("--max-failures", type=int, default=2, help="worker-group restarts allowed before the run fails")
    ray.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else SQLite in $GENPRINT_HOME)"
    )
    ray.add_argument("--no-track", action="store_true", help="skip MLflow tracking and registration")
    ray.add_argument("--no-register", action="store_true", help="track the run but do not register the bundle")
    ray.add_argument(
        "--eval", action="store_true", help="evaluate the final bundle on held-out photos and log the report"
    )
    ray.add_argument("--eval-users", type=int, default=1000, help="registered users simulated by --eval")
    p.set_defaults(func=run)


def parse_overrides(items: list[str], steps: int | None = None) -> dict:
    """`KEY=VALUE` strings -> config overrides for `load_config`; values are YAML (numbers, lists, mappings), dotted
    keys kept as they are (they reach into the config's mappings)."""
    import yaml

    from genprint.config import load_yaml
    from genprint.errors import GenprintError

    overrides: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise GenprintError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = load_yaml(text)
        except yaml.YAMLError as exc:
            raise GenprintError(f"--set {key}: {text!r} is not a YAML value ({str(exc).splitlines()[0]})") from None
    if steps is not None:
        overrides["steps"] = steps
    return overrides


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    from genprint.config import load_config
    from genprint.errors import GenprintError

    deadline = None
    if args.max_minutes is not None:
        if not args.max_minutes > 0:
            raise GenprintError(f"--max-minutes takes minutes above 0, got {args.max_minutes:g}")
        if args.workers:
            raise GenprintError("--max-minutes is for training in this process; with --workers a run ends at its steps")
        deadline = time.monotonic() + 60 * args.max_minutes
    config = load_config(args.config, parse_overrides(args.overrides, args.steps))
    if args.workers:
        from genprint import settings
        from pipelines.ray_train import train_distributed

        eval_settings = None
        if args.eval:
            from genprint.evaluation import EvalSettings

            eval_settings = EvalSettings(users=args.eval_users)
        summary = train_distributed(
            config,
            name=args.name or f"{config.name}-{Path(args.out.rstrip('/')).name}",
            out=args.out,
            storage=args.checkpoints or str(settings.home() / "ray_results"),
            workers=args.workers,
            photos=args.data,
            gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker,
            max_failures=args.max_failures,
            track=not args.no_track,
            tracking_uri=args.tracking_uri,
            register_alias=None if args.no_register else "candidate",
            eval_settings=eval_settings,
            ray_address=args.ray_address,
        )
        print(json.dumps(summary, default=str))
        return 0

    from genprint.training import Trainer

    out = Path(args.out)
    trainer = Trainer(config, photos=args.data)
    started = time.time()
    summary = trainer.run(
        checkpoint_dir=args.checkpoints or out / "checkpoints", progress=not args.no_progress, deadline=deadline
    )
    # training time across every resume (the learning curve's hours), and this command's own wall time
    summary.update(train_seconds=round(trainer.train_seconds, 2), wall_seconds=round(time.time() - started, 2))
    trainer.save_bundle(out, metrics={"final_window": summary, "steps": trainer.step})
    print(json.dumps({"bundle": str(out), "steps": trainer.step, **summary}))
    return 0
