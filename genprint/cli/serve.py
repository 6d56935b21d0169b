"""`genprint serve`: the Ray Serve application on this machine (local Ray, Serve on HTTP), until Ctrl-C."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve generation and attribution over HTTP on local Ray Serve",
        description="Start local Ray + Serve with the genprint application (serving.apps:ingress_app). "
        "Every serving setting also reads GENPRINT_<SETTING> from the environment. "
        "For a cluster use `serve deploy serving/serve_config.yaml` instead.",
    )
    p.add_argument(
        "--model",
        help="bundle directory, s3://... or models:/NAME@ALIAS (default: $GENPRINT_MODEL, else "
        "genprint's shipped bundle)",
    )
    p.add_argument(
        "--registry-url",
        help="registry database URL (default: $GENPRINT_REGISTRY_URL or the registry's SQLite default)",
    )
    p.add_argument("--pipeline", help="'tiny' (default, built offline) or a local / s3:// diffusers folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus metrics (Serve's and genprint's) on this port"
    )
    p.add_argument("--image-size", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any other serving setting (repeatable)"
    )
    p.set_defaults(func=run)


def settings_from_args(args):
    from genprint.errors import GenprintError
    from serving.settings import ServeSettings

    overrides = {
        "model": args.model,
        "registry_url": args.registry_url,
        "pipeline": args.pipeline,
        "image_size": args.image_size,
        "steps": args.steps,
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise GenprintError(f"--set {item!r}: use KEY=VALUE")
        overrides[key.strip()] = value
    return ServeSettings.load(overrides)


def run(args) -> int:
    import signal
    import threading

    from genprint.bundle import read_config
    from pipelines.tracking import resolve_model
    from serving.local import LocalServe

    settings = settings_from_args(args)
    # Resolved and checked here, before Ray starts: a wrong --model is one clear line, not a failed deployment.
    bundle = resolve_model(settings.model or None)
    read_config(bundle)
    settings = settings.model_copy(update={"model": str(bundle)})
    where = f"http://{args.host}:{args.port}"
    print(f"starting Ray Serve on {where} (model {settings.model}, pipeline {settings.pipeline}) ...")
    stop = threading.Event()
    with LocalServe(settings, host=args.host, port=args.port, metrics_port=args.metrics_port) as stack:
        # After Ray's start, whose driver would otherwise take SIGTERM and leave its agents and temp dir behind:
        # both signals end the wait, and leaving the block shuts Serve and Ray down and removes the temp dir.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: stop.set())
        print(
            f"ready: model {stack.ready.get('model_id')}  docs {stack.url}/docs  "
            f"metrics http://{args.host}:{args.metrics_port}/metrics"
        )
        print("Ctrl-C or SIGTERM stops it", flush=True)
        stop.wait()
        print("stopping ...", flush=True)
    return 0
