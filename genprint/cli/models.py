"""`genprint models list|show|promote|fetch`: the MLflow registry of extractor/generator versions."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="registered model versions (MLflow): list, show, promote, fetch")
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under ~/.genprint)"
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="every version of genprint-generator and genprint-extractor")
    show = sub.add_parser("show", help="one version with its partner, tags and run metrics")
    show.add_argument("model", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    promote = sub.add_parser("promote", help="point an alias at a version and its partner")
    promote.add_argument("model", help="models:/NAME/VERSION (or NAME/VERSION)")
    promote.add_argument("alias", choices=["candidate", "production"])
    fetch = sub.add_parser("fetch", help="download a registered pair (or an s3:// bundle) as a local bundle directory")
    fetch.add_argument("model", help="models:/NAME@ALIAS, models:/NAME/VERSION or s3://BUCKET/PREFIX")
    fetch.add_argument("--cache-dir", help="where downloads go (default $GENPRINT_CACHE or ~/.cache/genprint)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from genprint.errors import GenprintError

    try:
        from pipelines import tracking
    except ImportError as exc:
        raise GenprintError(f"`genprint models` needs MLflow ({exc}); install genprint[ray]") from None

    if args.models_command == "fetch":
        import os

        from pipelines.tracking import resolve_model

        if args.tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
        print(resolve_model(args.model, cache_dir=args.cache_dir))
        return 0
    ref = (
        tracking.parse_model_uri(args.model) if args.models_command in ("show", "promote") else None
    )  # bad input before any DB work
    mlc = tracking.client(args.tracking_uri)
    if args.models_command == "list":
        versions = tracking.list_versions(mlc)
        if not versions:
            print("no registered versions (train with `genprint train --workers N` to register some)")
        for mv in versions:
            aliases = ",".join(mv.aliases) or "-"
            print(
                f"{mv.name:<20} v{mv.version:<4} {aliases:<22} model {mv.tags.get('model_id', '?')}  "
                f"partner {mv.tags.get('partner', '?')}"
                f"  run {mv.run_id}"
            )
        return 0
    mv = tracking.get_version(mlc, ref)
    if args.models_command == "show":
        info = tracking.describe(mlc, mv)
        info["partner_check"] = "ok" if tracking.partner_of(mlc, mv) else "missing"
        print(json.dumps(info, indent=2, default=str))
        return 0
    if args.models_command == "promote":
        moved = tracking.promote(mlc, mv.name, mv.version, args.alias)
        print(f"{args.alias}: " + ", ".join(f"{name} v{version}" for name, version in moved.items()))
        return 0
    raise GenprintError(f"unknown action {args.models_command}")
