"""genprint train: fine-tune a fingerprinted decoder + extractor and write a bundle."""


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="jointly fine-tune decoder, mapping network and extractor; writes a bundle")
    p.add_argument("--config", required=True, help="config name (smoke, default, tiny) or YAML path")
    p.add_argument("--data", help="folder of training photos (default: shared photos, else scikit-image's)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--steps", type=int, help="override the config's step count")
    p.add_argument("--checkpoints", help="checkpoint directory (default: OUT/checkpoints; with --workers, Ray's storage path, local or s3://); re-running resumes from it")
    p.add_argument("--workers", type=int, default=0, help="run distributed on Ray Train with N workers (0: in this process)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    if args.workers:
        from pipelines.train import main as ray_main  # Ray stays out of the single-process path

        argv = ["--config", args.config, "--out", args.out, "--workers", str(args.workers)]
        argv += ["--data", args.data] if args.data else []
        argv += ["--steps", str(args.steps)] if args.steps else []
        argv += ["--storage", args.checkpoints] if args.checkpoints else []
        return ray_main(argv)

    from genprint.config import load_config
    from genprint.training import Trainer

    config = load_config(args.config, {"steps": args.steps} if args.steps else None)
    out = Path(args.out)
    trainer = Trainer(config, photos=args.data)
    started = time.time()
    summary = trainer.run(checkpoint_dir=args.checkpoints or out / "checkpoints", progress=not args.no_progress)
    summary["train_seconds"] = round(time.time() - started, 1)
    trainer.save_bundle(out, metrics={"final_window": summary, "steps": trainer.step})
    print(json.dumps({"bundle": str(out), "steps": trainer.step, **summary}))
    return 0
