"""`genprint attribute --model DIR IMAGE...`: who made these images?"""

from __future__ import annotations

import argparse
import json

from genprint.cli.eval import add_reader_options
from genprint.cli.registry_options import add_api_key_option, add_db_option, authenticated_tenant, open_registry


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("attribute", help="read the fingerprint of images and name the user who made them",
                                   description="Extracts each image's fingerprint (the CNN extractor on ONNX Runtime, or the slower "
                                               "inversion reader) and finds the nearest registered "
                                               "user of the model. Without an API key every tenant's users are searched "
                                               "(the distributor's view); with one, only that tenant's.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or WebP files")
    parser.add_argument("--model", required=True, metavar="DIR", help="model bundle directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per line: path, attributed, tenant, user, "
                                                            "fingerprint, distance, p_value (plus revoked, runner_up_distance, extracted)")
    parser.add_argument("--fpr", type=float, default=None, help="false-positive rate per query (default 1e-6)")
    parser.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (default 4096x4096)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    add_reader_options(parser)
    add_db_option(parser)
    add_api_key_option(parser, "optional: limits the search to that tenant's users")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genprint.attribution import ExtractorRuntime, attribute_images, bundle_onnx
    from genprint.imageio import DEFAULT_MAX_PIXELS

    if args.reader == "cnn":
        onnx_path, config = bundle_onnx(args.model)
        runtime = ExtractorRuntime(onnx_path, threads=args.threads)
    else:
        from genprint.bundle import load_bundle
        from genprint.inversion import InversionReader
        from genprint.model import default_device

        model = load_bundle(args.model, default_device())
        config, runtime = model.bundle_config, InversionReader(model, steps=args.inversion_steps, max_rotation=args.max_rotation)
    with open_registry(args) as registry:
        scope = authenticated_tenant(registry, args, required=False)
        results = attribute_images(registry, runtime, config["model_id"], args.images, tenant_scope=scope,
                                   max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS, fpr=args.fpr)
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
            print(f"{r['path']}: not attributed (nearest distance {r['distance']}, p = {r['p_value'] if r['p_value'] is None else format(r['p_value'], '.2e')})")
        failed += "error" in r
    return 2 if failed else 0
