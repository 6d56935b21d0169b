"""`genprint attribute [--model BUNDLE] IMAGE...`: who made these images (or sound files, with an audio bundle)?"""

from __future__ import annotations

import argparse
import json

from genprint.cli.options import (
    add_api_key_option,
    add_db_option,
    add_model_option,
    add_reader_options,
    authenticated_tenant,
    open_registry,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "attribute",
        help="read the fingerprint of images and name the user who made them",
        description="Extracts each image's fingerprint (the CNN extractor on ONNX Runtime, or the slower "
        "inversion reader) and finds the nearest registered "
        "user of the model. Without an API key every tenant's users are searched "
        "(the distributor's view); with one, only that tenant's.",
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="PNG, JPEG or WebP files (WAV or FLAC for an audio bundle)"
    )
    add_model_option(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: path, attributed, tenant, user, "
        "fingerprint, distance, p_value (plus revoked, runner_up_distance, extracted)",
    )
    parser.add_argument("--fpr", type=float, default=None, help="false-positive rate per query (default 1e-6)")
    parser.add_argument(
        "--max-pixels", type=int, default=None, help="refuse images with more pixels (default 4096x4096)"
    )
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument(
        "--strict-fpr",
        action="store_true",
        help="refuse an --fpr below what the bundle's calibration (genprint calibrate) can vouch for",
    )
    parser.add_argument(
        "--collection",
        action="store_true",
        help="the images come from one source (an account's uploads): attribute them jointly, one answer; a set "
        "whose images point at different users is attributed to nobody",
    )
    add_reader_options(parser, cascade=True)
    add_db_option(parser)
    add_api_key_option(parser, "optional: limits the search to that tenant's users")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genprint import calibration
    from genprint.attribution import answer_row, attribute_files, load_images, make_attributor
    from genprint.bundle import read_config
    from genprint.cli.options import model_dir
    from genprint.imageio import DEFAULT_MAX_PIXELS
    from genprint.registry.store import DEFAULT_FPR

    bundle = model_dir(args)
    config = read_config(bundle)
    calibration.check_fpr(
        calibration.load(bundle), args.fpr or DEFAULT_FPR, strict=args.strict_fpr, model_id=config["model_id"]
    )
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    audio = config["extractor"].get("modality") == "audio"
    with open_registry(args) as registry:
        scope = authenticated_tenant(registry, args, required=False)
        attributor = make_attributor(
            bundle,
            args.reader,
            registry,
            threads=args.threads,
            inversion_steps=args.inversion_steps,
            max_rotation=args.max_rotation,
            escalate_p=args.escalate_p,
        )
        if args.collection:
            images, errors = load_images(args.images, max_pixels, audio)
            good = [p for i, p in enumerate(args.images) if i not in errors]
            results = [{"path": args.images[i], "error": e} for i, e in sorted(errors.items())]
            if images:
                answer = attributor.attribute_collection(images, scope, fpr=args.fpr, labels=good)
                results.append(answer_row(f"collection of {len(images)}", answer) | {"paths": good})
        else:
            results = attribute_files(
                attributor, args.images, scope=scope, max_pixels=max_pixels, fpr=args.fpr, audio=audio
            )
    failed = 0
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{r['path']}: error: {r['error']}")
        elif r["attributed"]:
            flag = " [REVOKED]" if r["revoked"] else ""
            print(f"{r['path']}: {r['tenant']}/{r['user']}{flag} (distance {r['distance']}, p = {r['p_value']:.2e})")
        else:
            print(
                f"{r['path']}: not attributed (nearest distance {r['distance']}, "
                f"p = {r['p_value'] if r['p_value'] is None else format(r['p_value'], '.2e')})"
            )
        failed += "error" in r
    return 2 if failed else 0
